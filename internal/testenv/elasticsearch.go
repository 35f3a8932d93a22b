package testenv

import (
	"io"
	"net/http"
	"strings"
	"time"
)

// ESDo sends one request to the Elasticsearch at url (ElasticsearchURL)
// and returns the status and the answer's body; status is 0 when the
// request failed.
func ESDo(url, method, path, body string) (int, []byte) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, strings.TrimRight(url, "/")+path, rd)
	if err != nil {
		return 0, nil
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, nil
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// DeleteES deletes what a test created on the Elasticsearch at url under
// names of its own: the data streams and indices, the index template of
// each (templateOf names it), and the ILM policy. It runs at cleanup, so
// answers are not checked: what is already gone is fine.
func DeleteES(url string, streams, indices []string, templateOf func(string) string, ilmPolicy string) {
	for _, s := range streams {
		ESDo(url, http.MethodDelete, "/_data_stream/"+s, "")
		ESDo(url, http.MethodDelete, "/_index_template/"+templateOf(s), "")
	}
	for _, idx := range indices {
		ESDo(url, http.MethodDelete, "/"+idx, "")
		ESDo(url, http.MethodDelete, "/_index_template/"+templateOf(idx), "")
	}
	ESDo(url, http.MethodDelete, "/_ilm/policy/"+ilmPolicy, "")
}
