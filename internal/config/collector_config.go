package config

// CollectorConfig configures the collector's sources (`kubesift collect`).
type CollectorConfig struct {
}

func defaultCollector() CollectorConfig { return CollectorConfig{} }

// validate adds problems of the collector section, with full field paths
// ("collector.…"), to v.
func (c *CollectorConfig) validate(v *validator) {}
