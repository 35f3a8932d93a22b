package rules

import (
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/kubesift/kubesift/internal/netorigin"
	"github.com/kubesift/kubesift/record"
)

// TestAuditKeyReadsIndexFields fills every field the audit index keys on
// with a value of its own and checks that auditKey returns them in the
// order of sources[audit].keys: a key read from the wrong field would keep
// rules from records they match.
func TestAuditKeyReadsIndexFields(t *testing.T) {
	var e AuditEnv
	v := reflect.ValueOf(&e).Elem()
	want := map[string]string{}
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		name := f.Tag.Get("expr")
		switch f.Type.Kind() {
		case reflect.String:
			v.Field(i).SetString("value of " + name)
			want[name] = "value of " + name
		case reflect.Int:
			v.Field(i).SetInt(int64(400 + i))
			want[name] = strconv.Itoa(400 + i)
		}
	}
	e.origin = &netorigin.Origin{Class: netorigin.ClassPublic, Lists: []string{"ioc"}}
	want["source.class"], want["source.lists"] = string(netorigin.ClassPublic), anyValue
	keys := sources[record.SourceAudit].keys
	got := auditKey(&e)
	for i, field := range keys {
		if field == "" {
			if got[i] != "" {
				t.Errorf("key %d is unused but reads %q", i, got[i])
			}
			continue
		}
		if got[i] != want[field] {
			t.Errorf("key %d (%s) reads %q, want %q", i, field, got[i], want[field])
		}
	}
}

// TestIndexKeysNarrowCandidates checks what each audit key adds: a rule
// comparing the key field with a constant (or a list of them) is a
// candidate only for records with that value, and a rule that does not is
// a candidate for every record. The index holds, beside the rule under
// test, one naming user "alice", so that user is not a field no rule names.
func TestIndexKeysNarrowCandidates(t *testing.T) {
	listed := AuditEnv{origin: &netorigin.Origin{Lists: []string{"ioc"}}}
	for _, tc := range []struct {
		name, condition string
		env             AuditEnv
		candidate       bool
	}{
		{"subresource matches", `verb == "create" && subresource == "exec"`, AuditEnv{Verb: "create", Subresource: "exec"}, true},
		{"subresource differs", `verb == "create" && subresource == "exec"`, AuditEnv{Verb: "create", Subresource: "log"}, false},
		{"stage in list", `stage in ["ResponseStarted", "ResponseComplete"]`, AuditEnv{Stage: "ResponseComplete"}, true},
		{"stage not in list", `stage in ["ResponseStarted", "ResponseComplete"]`, AuditEnv{Stage: "RequestReceived"}, false},
		{"decision", `decision == "forbid"`, AuditEnv{Decision: "allow"}, false},
		{"code matches", `code == 401 && stage != "RequestReceived"`, AuditEnv{Code: 401}, true},
		{"code differs", `code == 401`, AuditEnv{Code: 200}, false},
		{"code reversed", `403 == code`, AuditEnv{Code: 403}, true},
		{"either side of ||", `code == 401 || decision == "forbid"`, AuditEnv{Code: 200, Decision: "forbid"}, true},
		{"negation does not constrain", `!(code == 401)`, AuditEnv{Code: 401}, true},
		{"not equal does not constrain", `decision != "forbid"`, AuditEnv{Decision: "forbid"}, true},
		{"user named", `user == "system:anonymous"`, AuditEnv{User: "system:anonymous"}, true},
		{"user another rule names", `user == "system:anonymous"`, AuditEnv{User: "alice"}, false},
		{"user no rule names", `user == "system:anonymous"`, AuditEnv{User: "bob"}, false},
		{"user in list", `user in ["bob", "carol"]`, AuditEnv{User: "carol"}, true},
		{"not empty, set", `impersonated_user != "" && verb == "get"`, AuditEnv{Verb: "get", ImpersonatedUser: "bob"}, true},
		{"not empty, named elsewhere", `user != ""`, AuditEnv{User: "alice"}, true},
		{"not empty, empty", `impersonated_user != "" && verb == "get"`, AuditEnv{Verb: "get"}, false},
		{"not empty reversed", `"" != impersonated_user`, AuditEnv{ImpersonatedUser: "bob"}, true},
		{"not empty and equal", `impersonated_user != "" && impersonated_user == "x"`, AuditEnv{ImpersonatedUser: "y"}, false},
		{"equal and not empty", `impersonated_user == "x" && impersonated_user != ""`, AuditEnv{ImpersonatedUser: "x"}, true},
		{"not empty or equal", `impersonated_user != "" || verb == "get"`, AuditEnv{Verb: "get"}, true},
		{"listed", `"ioc" in source.lists`, listed, true},
		{"in no list", `"ioc" in source.lists`, AuditEnv{}, false},
		{"not listed does not constrain", `!("ioc" in source.lists)`, AuditEnv{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &merged{macros: map[string]*Macro{}, lists: map[string][]string{}}
			var rs []*compiledRule
			for _, cond := range []string{tc.condition, `user == "alice" && verb == "delete"`} {
				r := &Rule{ID: "r", Title: "t", Description: "d", Severity: SeverityLow, Source: "audit", Condition: cond}
				cr, errs := compileRule(r, m, 0)
				if len(errs) > 0 {
					t.Fatal(errs)
				}
				rs = append(rs, cr)
			}
			ix := newIndex(sources[record.SourceAudit], rs)
			if got := slices.Contains(ix.candidates(auditKey(&tc.env)), rs[0]); got != tc.candidate {
				t.Fatalf("candidate = %v, want %v (keys %q)", got, tc.candidate, rs[0].keys)
			}
		})
	}
}
