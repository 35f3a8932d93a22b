package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	tests := []struct {
		level, format string
		wantJSON      bool
		wantErr       string
	}{
		{"info", "json", true, ""},
		{"debug", "text", false, ""},
		{"warn", "auto", true, ""}, // a buffer is not a terminal
		{"loud", "json", false, `log level "loud"`},
		{"info", "xml", false, `log format "xml"`},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		l, err := New(&b, tc.level, tc.format)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s/%s: err = %v", tc.level, tc.format, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		l.Error("hello", "k", "v")
		isJSON := json.Valid(bytes.TrimSpace(b.Bytes()))
		if isJSON != tc.wantJSON {
			t.Errorf("%s/%s: json=%v output %q", tc.level, tc.format, isJSON, b.String())
		}
	}
}
