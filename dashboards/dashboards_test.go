package dashboards_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/roomcast/roomcast/dashboards"
	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relaytest/testrelay"
)

// ---------------------------------------------------------------------------
// The three files.

// dashboard is the part of a Grafana dashboard model the tests look at.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []target `json:"targets"`
	Panels  []panel  `json:"panels"` // of a collapsed row
}

type target struct {
	RefID      string          `json:"refId"`
	Expr       string          `json:"expr"`
	Datasource json.RawMessage `json:"datasource"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"` // a string, or {"query": "..."} in newer Grafana
	Datasource json.RawMessage `json:"datasource"`
}

// query returns the variable's query text, whichever shape it has.
func (v variable) query() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

// allPanels flattens rows' nested panels.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type promConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		Scheme        string `yaml:"scheme"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := fs.ReadFile(dashboards.Files, name)
	if err != nil {
		t.Fatalf("embedded %s: %v", name, err)
	}
	return b
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(readFile(t, "roomcast.json")))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("roomcast.json: %v", err)
	}
	return d
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var r ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, "alerts.yml")))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	return r
}

func loadPromConfig(t *testing.T) promConfig {
	t.Helper()
	var c promConfig
	if err := yaml.Unmarshal(readFile(t, "prometheus.yml"), &c); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	return c
}

// scrapeJob returns the job prometheus.yml scrapes the relay as, and the
// labels it attaches to every series besides the exported ones.
func scrapeJob(t *testing.T) (job string, targetLabels map[string]bool) {
	t.Helper()
	c := loadPromConfig(t)
	if len(c.ScrapeConfigs) == 0 {
		t.Fatal("prometheus.yml: no scrape_configs")
	}
	sc := c.ScrapeConfigs[0]
	targetLabels = map[string]bool{"instance": true, "job": true}
	for _, st := range sc.StaticConfigs {
		for l := range st.Labels {
			targetLabels[l] = true
		}
	}
	return sc.JobName, targetLabels
}

// ---------------------------------------------------------------------------
// Metric names out of PromQL, without the Prometheus parser.

// token kinds of lexRE, in the order of its alternatives.
const (
	tSpace = iota + 1
	tComment
	tString
	tVar
	tRange
	tNumber
	tIdent
	tPunct
)

// lexRE splits PromQL (with Grafana variables) into tokens. Every position
// matches some alternative, so the matches cover the whole text. Ranges and
// subqueries ([5m], [$__rate_interval], [1h:1m]) are one token, so durations
// never look like names; numbers (0.99, 1e9, 5m, 0x1f) start with a digit or
// a dot, so they never match tIdent.
var lexRE = regexp.MustCompile(`(?s)` +
	`(\s+)|` +
	`(#[^\n]*)|` +
	`("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`" + `)|` +
	`(\$\{[^}]*\}|\$[A-Za-z0-9_]+)|` +
	`(\[[^\]]*\])|` +
	`((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[A-Za-z0-9]*)|` +
	`([A-Za-z_:][A-Za-z0-9_:]*)|` +
	`(.)`)

type token struct {
	kind int
	text string
}

func lex(expr string) []token {
	var out []token
	for _, m := range lexRE.FindAllStringSubmatchIndex(expr, -1) {
		for k := tSpace; k <= tPunct; k++ {
			if m[2*k] >= 0 {
				if k != tSpace && k != tComment {
					out = append(out, token{k, expr[m[2*k]:m[2*k+1]]})
				}
				break
			}
		}
	}
	return out
}

// promqlFuncs are PromQL's functions and aggregation operators: identifiers
// that are followed by "(" and are not metrics.
var promqlFuncs = setOf(
	// aggregations
	"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
	"bottomk", "topk", "quantile", "limitk", "limit_ratio",
	// functions
	"abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
	"day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor",
	"histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
	"histogram_stddev", "histogram_stdvar", "histogram_sum", "double_exponential_smoothing",
	"holt_winters", "hour", "idelta", "increase", "info", "irate", "label_join", "label_replace",
	"ln", "log2", "log10", "minute", "month", "predict_linear", "rate", "resets", "round",
	"scalar", "sgn", "sort", "sort_desc", "sort_by_label", "sort_by_label_desc", "sqrt", "time",
	"timestamp", "vector", "year", "avg_over_time", "min_over_time", "max_over_time",
	"sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time",
	"stdvar_over_time", "last_over_time", "present_over_time", "mad_over_time",
	"acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh",
	"deg", "rad", "pi", "start", "end",
)

// groupingWords take a parenthesised list of label names.
var groupingWords = setOf("by", "without", "on", "ignoring", "group_left", "group_right")

// promqlKeywords are the other identifiers that are not metrics.
var promqlKeywords = setOf("and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
	"group_left", "group_right")

func setOf(s ...string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}

// matcher is one label matcher of a selector, with its value unquoted.
type matcher struct{ label, op, value string }

// selector is one use of a metric in an expression.
type selector struct {
	name     string
	matchers []matcher
}

// parsed is what an expression queries.
type parsed struct {
	selectors []selector
	grouping  []string // label names of by, without, on, ignoring, group_left, group_right
}

func (p parsed) names() []string {
	var out []string
	for _, s := range p.selectors {
		if !slices.Contains(out, s.name) {
			out = append(out, s.name)
		}
	}
	sort.Strings(out)
	return out
}

// parsePromQL finds the metric names an expression queries: identifiers
// that look like metric names and are followed by "{", "[", ")", ",", an
// operator, whitespace or the end, that are not PromQL functions (an
// identifier followed by "(" must be a known function), keywords or the
// label names of grouping clauses and matchers.
func parsePromQL(expr string) (parsed, error) {
	var p parsed
	toks := lex(expr)
	at := func(i int) token {
		if i < len(toks) {
			return toks[i]
		}
		return token{}
	}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		switch {
		case tk.kind == tIdent && at(i+1).text == "(" && groupingWords[tk.text]:
			j := i + 2
			for ; j < len(toks) && toks[j].text != ")"; j++ {
				switch {
				case toks[j].kind == tIdent:
					p.grouping = append(p.grouping, toks[j].text)
				case toks[j].text != ",":
					return p, fmt.Errorf("unexpected %q in %s(...)", toks[j].text, tk.text)
				}
			}
			if j == len(toks) {
				return p, fmt.Errorf("unclosed %s(", tk.text)
			}
			i = j
		case tk.kind == tIdent && promqlFuncs[tk.text] && groupingWords[at(i+1).text]:
			// sum by (...) (...): the grouping clause is handled next
		case tk.kind == tIdent && at(i+1).text == "(":
			if !promqlFuncs[tk.text] {
				return p, fmt.Errorf("unknown PromQL function %s()", tk.text)
			}
		case tk.kind == tIdent && promqlKeywords[tk.text]:
		case tk.kind == tIdent:
			s := selector{name: tk.text}
			if at(i+1).text == "{" {
				ms, n, err := parseMatchers(toks[i+1:])
				if err != nil {
					return p, fmt.Errorf("%s: %w", tk.text, err)
				}
				s.matchers = ms
				i += n
			}
			if next := at(i + 1); next.kind == tIdent && !promqlKeywords[next.text] && !groupingWords[next.text] {
				return p, fmt.Errorf("%s followed by %s: not a metric name", tk.text, next.text)
			}
			p.selectors = append(p.selectors, s)
		case tk.text == "{": // {__name__="x", ...}
			ms, n, err := parseMatchers(toks[i:])
			if err != nil {
				return p, err
			}
			s := selector{matchers: ms}
			for _, m := range ms {
				if m.label == "__name__" && m.op == "=" {
					s.name = m.value
				}
			}
			if s.name == "" {
				return p, fmt.Errorf("selector without a metric name")
			}
			p.selectors = append(p.selectors, s)
			i += n - 1
		}
	}
	return p, nil
}

// parseMatchers parses toks[0] == "{" up to the closing "}", and returns the
// matchers and the number of tokens used.
func parseMatchers(toks []token) ([]matcher, int, error) {
	var ms []matcher
	i := 1
	for i < len(toks) && toks[i].text != "}" {
		if toks[i].text == "," {
			i++
			continue
		}
		if toks[i].kind != tIdent {
			return nil, 0, fmt.Errorf("bad matcher at %q", toks[i].text)
		}
		m := matcher{label: toks[i].text}
		i++
		for i < len(toks) && toks[i].kind == tPunct && strings.Contains("=!~", toks[i].text) {
			m.op += toks[i].text
			i++
		}
		if i == len(toks) || toks[i].kind != tString || !slices.Contains([]string{"=", "!=", "=~", "!~"}, m.op) {
			return nil, 0, fmt.Errorf("bad matcher for label %s", m.label)
		}
		v, err := strconv.Unquote(toks[i].text)
		if err != nil {
			return nil, 0, fmt.Errorf("label %s: %v", m.label, err)
		}
		m.value = v
		ms = append(ms, m)
		i++
	}
	if i == len(toks) {
		return nil, 0, fmt.Errorf("unclosed {")
	}
	return ms, i + 1, nil
}

// labelValuesRE matches Grafana's label_values(metric, label) variable query.
var labelValuesRE = regexp.MustCompile(`^\s*label_values\(\s*(.+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)

// parseVariableQuery parses a Grafana Prometheus variable query.
func parseVariableQuery(q string) (parsed, error) {
	if m := labelValuesRE.FindStringSubmatch(q); m != nil {
		p, err := parsePromQL(m[1])
		p.grouping = append(p.grouping, m[2])
		return p, err
	}
	if strings.HasPrefix(strings.TrimSpace(q), "query_result(") {
		return parsePromQL(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(q), "query_result("), ")"))
	}
	return parsed{}, nil // label_values(label), label_names(), metrics(regex): no metric named
}

func TestParsePromQL(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
		err  bool
	}{
		{`rate(foo_total[5m])`, []string{"foo_total"}, false},
		{`histogram_quantile(0.99, sum by (instance, le) (rate(a_seconds_bucket{instance=~"$instance"}[$__rate_interval]))) > 0.25`,
			[]string{"a_seconds_bucket"}, false},
		{`up{job="roomcast"} == 0`, []string{"up"}, false},
		{`sum(rate(x_total[5m])) by (code) / ignoring(code) group_left sum(y)`, []string{"x_total", "y"}, false},
		{"a / clamp_min(b, 1e3) + c offset 5m * 2 unless on(instance) d @ 1609746000", []string{"a", "b", "c", "d"}, false},
		{"label_replace(m{l=\"a,b\"}, \"dst\", \"$1\", \"src\", \"(.*)\")  # a comment naming not_a_metric\n", []string{"m"}, false},
		{`max_over_time(rate(q:r:rate5m[5m])[1h:1m]) and bool 1`, []string{"q:r:rate5m"}, false},
		{`{__name__="via_name", x="1"}`, []string{"via_name"}, false},
		{`rat(foo[5m])`, nil, true},
		{`sum(foo{le=}) `, nil, true},
		{`foo bar`, nil, true},
	} {
		p, err := parsePromQL(c.expr)
		if (err != nil) != c.err {
			t.Errorf("%s: error %v, want error %v", c.expr, err, c.err)
			continue
		}
		if got := p.names(); !c.err && !slices.Equal(got, c.want) {
			t.Errorf("%s: names %q, want %q", c.expr, got, c.want)
		}
	}
	p, _ := parsePromQL(`sum by (le, instance) (rate(h_bucket{instance=~"$instance",code="4009"}[5m]))`)
	if !slices.Equal(p.grouping, []string{"le", "instance"}) || len(p.selectors) != 1 ||
		!slices.Equal(p.selectors[0].matchers, []matcher{{"instance", "=~", "$instance"}, {"code", "=", "4009"}}) {
		t.Errorf("grouping %q, selectors %+v", p.grouping, p.selectors)
	}
	p, err := parseVariableQuery(`label_values(roomcast_rooms{job="x"}, instance)`)
	if err != nil || !slices.Equal(p.names(), []string{"roomcast_rooms"}) || !slices.Equal(p.grouping, []string{"instance"}) {
		t.Errorf("label_values: %v %+v", err, p)
	}
}

// ---------------------------------------------------------------------------
// Structure of the files.

func datasourceUID(raw json.RawMessage) string {
	var ds struct {
		UID string `json:"uid"`
	}
	_ = json.Unmarshal(raw, &ds)
	return ds.UID
}

func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q: both are needed", d.UID, d.Title)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want at least 36", d.SchemaVersion)
	}
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v, ok := vars["datasource"]; !ok || v.Type != "datasource" || v.query() != "prometheus" {
		t.Errorf("templating: want a datasource variable of Prometheus data sources named datasource, have %+v", v)
	}
	if v, ok := vars["instance"]; !ok || v.Type != "query" || v.query() == "" || datasourceUID(v.Datasource) != "${datasource}" {
		t.Errorf("templating: want a query variable named instance on ${datasource}, have %+v", v)
	}

	ids := map[int]string{}
	n := 0
	for _, p := range allPanels(d.Panels) {
		if p.Title == "" {
			t.Errorf("panel %d (%s) has no title", p.ID, p.Type)
		}
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panel id %d used by %q and %q", p.ID, prev, p.Title)
		}
		ids[p.ID] = p.Title
		if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		n++
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		if uid := datasourceUID(p.Datasource); uid != "${datasource}" {
			t.Errorf("panel %q: datasource uid %q, want ${datasource}", p.Title, uid)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q target %s has an empty expr", p.Title, tg.RefID)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q missing or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if uid := datasourceUID(tg.Datasource); tg.Datasource != nil && uid != "${datasource}" {
				t.Errorf("panel %q target %s: datasource uid %q, want ${datasource}", p.Title, tg.RefID, uid)
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d panels", n)
	}
}

// promTemplateFuncs stand in for the template functions Prometheus gives
// alert annotations, enough to parse and run them.
var promTemplateFuncs = template.FuncMap{}

func init() {
	for _, f := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage",
		"humanizeTimestamp", "toUpper", "toLower", "title", "reReplaceAll", "match", "query", "first",
		"label", "value", "args", "safeHtml", "stripPort", "externalURL", "pathPrefix"} {
		promTemplateFuncs[f] = func(a ...any) string { return fmt.Sprint(a...) }
	}
}

func TestAlertRulesStructure(t *testing.T) {
	rf := loadRules(t)
	if len(rf.Groups) == 0 {
		t.Fatal("alerts.yml: no groups")
	}
	names := map[string]bool{}
	alerts := 0
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: a group needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			if r.Record != "" {
				if r.Expr == "" {
					t.Errorf("recording rule %s has no expr", r.Record)
				}
				continue
			}
			alerts++
			if r.Alert == "" {
				t.Errorf("rule without alert or record name: %+v", r)
				continue
			}
			if names[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			names[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("alert %s has no expr", r.Alert)
			}
			if strings.Contains(r.Expr, "$") {
				t.Errorf("alert %s: expr uses a $ variable (Grafana syntax?)", r.Alert)
			}
			if d, err := model.ParseDuration(r.For); r.For == "" || err != nil || d == 0 {
				t.Errorf("alert %s: for %q: want a duration (%v)", r.Alert, r.For, err)
			}
			if sev := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, sev) {
				t.Errorf("alert %s: labels.severity %q, want critical, warning or info", r.Alert, sev)
			}
			for _, k := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[k]) == "" {
					t.Errorf("alert %s has no annotations.%s", r.Alert, k)
				}
			}
			for k, text := range r.Annotations {
				// As Prometheus expands them: these variables, then the text.
				defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
				tm, err := template.New(k).Funcs(promTemplateFuncs).Option("missingkey=zero").Parse(defs + text)
				if err == nil {
					err = tm.Execute(io.Discard, struct {
						Labels, ExternalLabels map[string]string
						ExternalURL            string
						Value                  float64
					}{Labels: map[string]string{}, ExternalLabels: map[string]string{}, Value: 1})
				}
				if err != nil {
					t.Errorf("alert %s annotation %s: %v", r.Alert, k, err)
				}
			}
		}
	}
	for _, want := range []string{"up", "roomcast_fanout_seconds_bucket", "roomcast_slow_consumers_total",
		"roomcast_handshake_failures_total", "roomcast_outbound_queued_bytes", "roomcast_ratelimit_hits_total",
		"roomcast_messages_rejected_total", "roomcast_bus_connected", "roomcast_bus_publish_failures_total",
		"roomcast_publish_hook_requests_total", "roomcast_webhook_events_total"} {
		found := false
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				p, _ := parsePromQL(r.Expr)
				found = found || slices.Contains(p.names(), want)
			}
		}
		if !found {
			t.Errorf("no alert on %s", want)
		}
	}
}

func TestPrometheusConfig(t *testing.T) {
	c := loadPromConfig(t)
	for _, d := range []string{c.Global.ScrapeInterval, c.Global.EvaluationInterval} {
		if _, err := model.ParseDuration(d); d != "" && err != nil {
			t.Errorf("global: %v", err)
		}
	}
	if len(c.ScrapeConfigs) == 0 {
		t.Fatal("no scrape_configs")
	}
	sc := c.ScrapeConfigs[0]
	if sc.JobName == "" {
		t.Error("scrape config without job_name")
	}
	if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
		t.Errorf("metrics_path %q: the relay serves /metrics", sc.MetricsPath)
	}
	var targets []string
	for _, st := range sc.StaticConfigs {
		targets = append(targets, st.Targets...)
	}
	if !slices.Contains(targets, "127.0.0.1:9090") {
		t.Errorf("targets %q: want the admin listener's default 127.0.0.1:9090", targets)
	}
	if !slices.Contains(c.RuleFiles, "alerts.yml") {
		t.Errorf("rule_files %q: want alerts.yml", c.RuleFiles)
	}
	for _, f := range c.RuleFiles {
		if _, err := fs.Stat(dashboards.Files, f); err != nil {
			t.Errorf("rule file %s: %v", f, err)
		}
	}
}

// ---------------------------------------------------------------------------
// Every metric queried is one a real relay exports.

// exported maps each series name a relay exposes (histograms and summaries
// also as _bucket, _sum and _count) to its label names and their values.
type exported map[string]map[string]map[string]bool

func (e exported) add(name string, labels map[string]string) {
	if e[name] == nil {
		e[name] = map[string]map[string]bool{}
	}
	for k, v := range labels {
		if e[name][k] == nil {
			e[name][k] = map[string]bool{}
		}
		e[name][k][v] = true
	}
}

func parseExposition(r io.Reader) (exported, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	e := exported{}
	for name, mf := range fams {
		for _, m := range mf.GetMetric() {
			lbl := map[string]string{}
			for _, lp := range m.GetLabel() {
				lbl[lp.GetName()] = lp.GetValue()
			}
			with := func(k, v string) map[string]string {
				c := map[string]string{k: v}
				for a, b := range lbl {
					c[a] = b
				}
				return c
			}
			switch mf.GetType().String() {
			case "HISTOGRAM", "GAUGE_HISTOGRAM":
				e.add(name, lbl)
				for _, b := range m.GetHistogram().GetBucket() {
					e.add(name+"_bucket", with("le", strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)))
				}
				e.add(name+"_bucket", with("le", "+Inf"))
				e.add(name+"_sum", lbl)
				e.add(name+"_count", lbl)
			case "SUMMARY":
				for _, q := range m.GetSummary().GetQuantile() {
					e.add(name, with("quantile", strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64)))
				}
				e.add(name+"_sum", lbl)
				e.add(name+"_count", lbl)
			default:
				e.add(name, lbl)
			}
		}
	}
	return e, nil
}

// value returns the sum of the samples of a counter or gauge, or the count
// of a histogram, with the given labels.
func sampleValue(t *testing.T, body []byte, name string, labels map[string]string) float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	mf := fams[name]
	for _, m := range mf.GetMetric() {
		match := true
		for k, v := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || lp.GetName() == k && lp.GetValue() == v
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// checkQuery reports what of expression p is not exported by a relay: metric
// names, label names (of matchers and grouping clauses) that neither the
// metric nor the scrape (targetLabels) has, and equality matchers on a value
// the relay never exports.
func checkQuery(p parsed, e exported, targetLabels map[string]bool) []string {
	var problems []string
	known := map[string]bool{}
	for l := range targetLabels {
		known[l] = true
	}
	for _, s := range p.selectors {
		labels, ok := e[s.name]
		if !ok {
			problems = append(problems, "unknown metric "+s.name)
			continue
		}
		for l := range labels {
			known[l] = true
		}
		for _, m := range s.matchers {
			switch vals, has := labels[m.label]; {
			case m.label == "__name__":
			case !has && !targetLabels[m.label]:
				problems = append(problems, fmt.Sprintf("%s has no label %s", s.name, m.label))
			case has && m.op == "=" && !strings.Contains(m.value, "$") && !vals[m.value]:
				problems = append(problems, fmt.Sprintf("%s never has %s=%q", s.name, m.label, m.value))
			}
		}
	}
	for _, l := range p.grouping {
		if !known[l] {
			problems = append(problems, fmt.Sprintf("no metric of the query has label %s", l))
		}
	}
	return problems
}

// queries lists every PromQL expression of the three files, by where it is.
type query struct {
	where, expr string
	parsed      parsed
	dashboard   bool
}

func allQueries(t *testing.T) []query {
	t.Helper()
	var qs []query
	d := loadDashboard(t)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		p, err := parseVariableQuery(v.query())
		if err != nil {
			t.Errorf("variable %s: %q: %v", v.Name, v.query(), err)
		}
		qs = append(qs, query{where: "roomcast.json variable " + v.Name, expr: v.query(), parsed: p})
	}
	for _, pn := range allPanels(d.Panels) {
		for _, tg := range pn.Targets {
			p, err := parsePromQL(tg.Expr)
			if err != nil {
				t.Errorf("panel %q target %s: %q: %v", pn.Title, tg.RefID, tg.Expr, err)
			}
			qs = append(qs, query{where: fmt.Sprintf("roomcast.json panel %q target %s", pn.Title, tg.RefID),
				expr: tg.Expr, parsed: p, dashboard: true})
		}
	}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			p, err := parsePromQL(r.Expr)
			if err != nil {
				t.Errorf("alert %s: %q: %v", r.Alert+r.Record, r.Expr, err)
			}
			qs = append(qs, query{where: "alerts.yml " + r.Alert + r.Record, expr: r.Expr, parsed: p})
		}
	}
	return qs
}

// TestQueriesFilterInstanceAndJob checks that every dashboard query follows
// the instance variable and every alert selects the job prometheus.yml
// scrapes, so that neither silently reads other nodes or other jobs.
func TestQueriesFilterInstanceAndJob(t *testing.T) {
	job, _ := scrapeJob(t)
	for _, q := range allQueries(t) {
		for _, s := range q.parsed.selectors {
			switch {
			case q.dashboard && !slices.Contains(s.matchers, matcher{"instance", "=~", "$instance"}):
				t.Errorf("%s: %s lacks instance=~\"$instance\"", q.where, s.name)
			case strings.HasPrefix(q.where, "alerts.yml") && !slices.Contains(s.matchers, matcher{"job", "=", job}):
				t.Errorf("%s: %s lacks job=%q (the job_name of prometheus.yml)", q.where, s.name, job)
			}
		}
	}
}

const jwtSecret = "x"

// driveTraffic connects one user, joins room r, sends a few messages and one
// to a room it has not joined, and reads the replies.
func driveTraffic(t *testing.T, srv *relay.Server) {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u1"}).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dialer{Protocols: []string{"roomcast.v1.json"}}.Dial(ctx, "ws://"+srv.Addr()+"/ws?token="+tok)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var rw io.ReadWriter = conn
	if br != nil { // frames that came with the handshake response
		rw = struct {
			io.Reader
			io.Writer
		}{br, conn}
	}
	send := func(f string) {
		if err := wsutil.WriteClientText(conn, []byte(f)); err != nil {
			t.Fatalf("write %s: %v", f, err)
		}
	}
	recv := func() map[string]any {
		b, err := wsutil.ReadServerText(rw)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var f map[string]any
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("frame %s: %v", b, err)
		}
		return f
	}
	if f := recv(); f["t"] != "hello" {
		t.Fatalf("first frame %v, want hello", f)
	}
	send(`{"t":"join","room":"r","ref":1}`)
	if f := recv(); f["t"] != "joined" {
		t.Fatalf("after join: %v", f)
	}
	const sends = 3
	for i := 0; i < sends; i++ {
		send(fmt.Sprintf(`{"t":"send","room":"r","body":"hi","ref":%d}`, 2+i))
	}
	send(`{"t":"send","room":"elsewhere","body":"hi","ref":9}`)
	acks, msgs, rejected := 0, 0, false
	for acks < sends || msgs < sends || !rejected {
		f := recv()
		switch f["t"] {
		case "ack":
			acks++
		case "batch":
			l, _ := f["msgs"].([]any)
			msgs += len(l)
		case "error":
			if f["code"] != "not_joined" {
				t.Fatalf("unexpected error frame %v", f)
			}
			rejected = true
		}
	}
}

// want is a sample the traffic must show in /metrics: its value (a
// histogram's count) at least min.
type want struct {
	name   string
	labels map[string]string
	min    float64
}

// busWants are what driveTraffic shows on a relay with a bus (-data-dir,
// -nats): its messages stored and received back, the publishes timed.
var busWants = []want{
	{"roomcast_bus_messages_total", map[string]string{"dir": "out"}, 3},
	{"roomcast_bus_messages_total", map[string]string{"dir": "in"}, 3},
	{"roomcast_bus_publish_seconds", nil, 1},
	{"roomcast_bus_connected", nil, 1},
	{"roomcast_bus_rooms_followed", nil, 1},
}

// backendWants are what driveTraffic shows on a relay configured by
// withBackend: its messages allowed by the hook and sent to the webhook.
var backendWants = []want{
	{"roomcast_publish_hook_requests_total", map[string]string{"outcome": "allow"}, 3},
	{"roomcast_publish_hook_seconds", nil, 3},
	{"roomcast_webhook_events_total", map[string]string{"webhook": "0", "outcome": "sent"}, 3},
	{"roomcast_webhook_posts_total", map[string]string{"webhook": "0", "result": "ok"}, 1},
}

// withBackend configures a publish hook on every namespace and a webhook
// of every event, both answered by httptest servers, so that the hook's and
// webhooks' metrics are exported.
func withBackend(t *testing.T) func(*relay.Config) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"allow": true}`)
	}))
	t.Cleanup(hook.Close)
	events := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(events.Close)
	return func(c *relay.Config) {
		c.Namespaces = map[string]relay.Namespace{"default": {PublishHook: &relay.PublishHook{URL: hook.URL}}}
		c.Webhooks = []relay.Webhook{{URL: events.URL, Secret: "s", BatchWait: 10 * time.Millisecond}}
	}
}

// scrape reads the relay's /metrics until the traffic shows in it (and the
// extra samples).
func scrape(t *testing.T, srv *relay.Server, extra ...want) []byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + srv.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
		}
		wants := append([]want{
			{"roomcast_messages_accepted_total", nil, 3},
			{"roomcast_messages_rejected_total", map[string]string{"code": "not_joined"}, 1},
			{"roomcast_deliveries_total", nil, 3},
			{"roomcast_fanout_seconds", nil, 1},
			{"roomcast_handshakes_total", nil, 1},
		}, extra...)
		var short []string
		for _, w := range wants {
			if v := sampleValue(t, body, w.name, w.labels); v < w.min {
				short = append(short, fmt.Sprintf("%s%v = %v, want at least %v", w.name, w.labels, v, w.min))
			}
		}
		if len(short) == 0 {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("the traffic did not show in /metrics: %s", strings.Join(short, "; "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startRelay starts a relay with cfg's changes to the test's base config;
// the test's cleanup shuts it down.
func startRelay(t *testing.T, mod func(*relay.Config)) *relay.Server {
	t.Helper()
	cfg := testrelay.Config(jwtSecret)
	cfg.NodeID, cfg.SendRate, cfg.SendBurst = "", 100, 100
	return testrelay.Start(t, cfg, mod)
}

// TestQueriedMetricsAreExported checks every queried metric, label and
// label value against what real relays export: one in memory mode with a
// publish hook and a webhook (httptest backends), and one with a bus
// (-data-dir, an embedded NATS server in a temp dir), whose expositions are
// merged, so the hook, webhook and bus panels and alerts are checked too.
func TestQueriedMetricsAreExported(t *testing.T) {
	mem := startRelay(t, withBackend(t))
	durable := startRelay(t, func(c *relay.Config) { c.DataDir = t.TempDir() })
	driveTraffic(t, mem)
	driveTraffic(t, durable)
	e, err := parseExposition(bytes.NewReader(scrape(t, mem, backendWants...)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	ed, err := parseExposition(bytes.NewReader(scrape(t, durable, busWants...)))
	if err != nil {
		t.Fatalf("parse /metrics of the -data-dir relay: %v", err)
	}
	for name, labels := range ed {
		e.add(name, nil)
		for k, vals := range labels {
			for v := range vals {
				e.add(name, map[string]string{k: v})
			}
		}
	}
	job, targetLabels := scrapeJob(t)
	// Series Prometheus itself adds for every target.
	for _, n := range []string{"up", "scrape_duration_seconds", "scrape_samples_scraped",
		"scrape_samples_post_metric_relabeling", "scrape_series_added"} {
		e.add(n, nil)
	}

	used := map[string]bool{}
	var problems []string
	for _, q := range allQueries(t) {
		for _, s := range q.parsed.selectors {
			used[s.name] = true
		}
		for _, p := range checkQuery(q.parsed, e, targetLabels) {
			problems = append(problems, fmt.Sprintf("%s: %s\n\t%s", q.where, p, q.expr))
		}
	}
	if len(problems) > 0 {
		names := make([]string, 0, len(e))
		for n := range e {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Errorf("queries that the relay's /metrics cannot answer:\n%s\n\nexported: %s",
			strings.Join(problems, "\n"), strings.Join(names, " "))
	}
	if len(used) < 25 {
		t.Errorf("only %d distinct metrics queried: the extraction is probably broken", len(used))
	}

	// The check itself catches a made-up metric, label and label value.
	for expr, want := range map[string]string{
		`rate(roomcast_made_up_total{job="` + job + `"}[5m])`:                "unknown metric roomcast_made_up_total",
		`sum by (flavour) (roomcast_rooms)`:                                  "no metric of the query has label flavour",
		`roomcast_disconnects_total{code="4242"}`:                            `roomcast_disconnects_total never has code="4242"`,
		`roomcast_connections{kind="ws",colour="red"}`:                       "roomcast_connections has no label colour",
		`histogram_quantile(0.5, rate(roomcast_fanout_seconds_buckets[5m]))`: "unknown metric roomcast_fanout_seconds_buckets",
	} {
		p, err := parsePromQL(expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := checkQuery(p, e, targetLabels); !slices.Contains(got, want) {
			t.Errorf("checkQuery(%s) = %q, want it to report %q", expr, got, want)
		}
	}
}
