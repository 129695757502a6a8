package weirtest

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/weirhq/weir/broker"
)

// Metrics scrapes the broker's metrics handler, as Prometheus would, and
// returns every series as written on the page (name{labels}) with its
// value, such as
//
//	m[`weir_topic_incoming_messages_total{topic="orders"}`]
//
// A series the broker does not export is absent from the map; check with
// the two-value form where absent and zero would mean different things. A
// page that cannot be read or parsed fails the test.
func Metrics(tb testing.TB, b *broker.Broker) map[string]float64 {
	tb.Helper()
	rec := httptest.NewRecorder()
	b.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		tb.Fatalf("weirtest: metrics: status %d: %s", rec.Code, rec.Body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			tb.Fatalf("weirtest: metrics: bad line %q", line)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("weirtest: metrics: %v", err)
	}
	return out
}
