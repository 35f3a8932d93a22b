package obs

import "testing"

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true}, // the scheme is case-insensitive (RFC 9110 §11.1)
		{"BEARER abc", "abc", true},
		{"BeArEr abc", "abc", true},
		{"Bearer  abc ", "abc", true},
		{"Bearer a b", "a b", true},
		{"", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer    ", "", false},
		{"abc", "", false},
		{"Basic YWJj", "", false},
		{"Bearerabc", "", false},
		{"Bearer\tabc", "", false},
	} {
		tok, ok := BearerToken(tc.header)
		if tok != tc.token || ok != tc.ok {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tc.header, tok, ok, tc.token, tc.ok)
		}
	}
}
