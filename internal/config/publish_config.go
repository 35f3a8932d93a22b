package config

// PublishConfig configures the collector's Kafka publisher and its disk spool.
type PublishConfig struct {
}

func defaultPublish() PublishConfig { return PublishConfig{} }

// validate adds problems of the publish section, with full field paths
// ("publish.…"), to v.
func (c *PublishConfig) validate(v *validator) {}
