package record

import (
	"bytes"
	"time"
	"unicode/utf8"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// decodeAuditFast decodes an audit event field by field, without the
// reflection-driven decoders: every audit record passes through here (the
// collector's decode and the processor's Unmarshal), and the typed view is
// most of a small record's decode time. It accepts only the shape
// kube-apiserver writes — exact-case keys, each at most once, values of the
// field's JSON type, strings without invalid UTF-8 — and reports false on
// anything else, so the caller's general path decides and names the error;
// accepting less can cost speed, never correctness. Like decodeAuditLite,
// request and response bodies of liteMinBody bytes or more are attached as
// spans without being walked; smaller ones and ignored fields are validated.
// FuzzAuditFast checks it against encoding/json.
func decodeAuditFast(data []byte, p *probe, ev *auditv1.Event) bool {
	var seen uint32
	field := func(m member) bool {
		key, val, at := data[m.key.start:m.key.end], data[m.val.start:m.val.end], m.val.start
		f := auditField(key)
		if f < 0 {
			return ignored(key, val, auditFieldNames)
		}
		if seen&(1<<f) != 0 {
			return false // a repeated key merges in encoding/json: let it
		}
		seen |= 1 << f
		return decodeAuditField(f, val, at, p, ev)
	}
	var ok bool
	if n := p.nmembers; n > 0 && n <= len(p.members) {
		// The top level was walked (and its syntax checked) already, by
		// scanProbe or by Unmarshal's validObject.
		ok = true
		for _, m := range p.members[:n] {
			if ok = field(m); !ok {
				break
			}
		}
	} else {
		ok = eachMember(data, field)
	}
	if !ok {
		*ev = auditv1.Event{}
	}
	return ok
}

// The audit event's fields, by JSON key.
const (
	afKind = iota
	afAPIVersion
	afLevel
	afAuditID
	afStage
	afRequestURI
	afVerb
	afUser
	afImpersonatedUser
	afAuthnMetadata
	afSourceIPs
	afUserAgent
	afObjectRef
	afResponseStatus
	afRequestObject
	afResponseObject
	afRequestReceived
	afStageTimestamp
	afAnnotations
)

// auditFieldNames are the audit event's keys, in the order of the field
// constants above.
var auditFieldNames = []string{
	"kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user", "impersonatedUser",
	"authenticationMetadata", "sourceIPs", "userAgent", "objectRef", "responseStatus", "requestObject",
	"responseObject", "requestReceivedTimestamp", "stageTimestamp", "annotations",
}

// auditFieldTable finds a key's field with one hash and one comparison, as
// commonTable finds a common string: this runs for every member of every
// audit event.
var auditFieldTable = newInternTable(auditFieldNames)

// auditField returns the field a key names, -1 for another key.
func auditField(key []byte) int { return auditFieldTable.position(key) }

func decodeAuditField(f int, val []byte, at int, p *probe, ev *auditv1.Event) bool {
	switch f {
	case afKind:
		return commonString(val, &ev.Kind)
	case afAPIVersion:
		return commonString(val, &ev.APIVersion)
	case afLevel:
		return commonString(val, (*string)(&ev.Level))
	case afAuditID:
		return jsonString(val, (*string)(&ev.AuditID))
	case afStage:
		return commonString(val, (*string)(&ev.Stage))
	case afRequestURI:
		return jsonString(val, &ev.RequestURI)
	case afVerb:
		return commonString(val, &ev.Verb)
	case afUserAgent:
		return jsonString(val, &ev.UserAgent)
	case afUser:
		return isNull(val) || userInfo(val, &ev.User)
	case afImpersonatedUser:
		if isNull(val) {
			return true
		}
		ev.ImpersonatedUser = new(authnv1.UserInfo)
		return userInfo(val, ev.ImpersonatedUser)
	case afAuthnMetadata:
		// Rare (constrained impersonation): the general decoder is fine.
		return isNull(val) || generalJSON(val, &ev.AuthenticationMetadata)
	case afSourceIPs:
		return stringList(val, &ev.SourceIPs)
	case afObjectRef:
		if isNull(val) {
			return true
		}
		ev.ObjectRef = p.objectRef()
		return objectRef(val, ev.ObjectRef)
	case afResponseStatus:
		if isNull(val) {
			return true
		}
		ev.ResponseStatus = p.status()
		return status(val, ev.ResponseStatus)
	case afRequestObject, afResponseObject:
		return body(val, at, p, f == afResponseObject, ev)
	case afRequestReceived:
		return microTime(val, &ev.RequestReceivedTimestamp)
	case afStageTimestamp:
		return microTime(val, &ev.StageTimestamp)
	case afAnnotations:
		return stringMap(val, &ev.Annotations)
	}
	return false
}

// body attaches a request or response object as a span of the document,
// as runtime.Unknown's UnmarshalJSON would hold it. A large one is not
// walked again: the probe found its extent, and the record keeps it as
// bytes that rules and the document builder parse only if they read it.
func body(val []byte, at int, p *probe, response bool, ev *auditv1.Event) bool {
	if isNull(val) {
		return true
	}
	if val[0] != '{' {
		return false
	}
	k := 0
	if response {
		k = 1
	}
	if b := p.bodies[k]; !p.valid && !(b.start == at && b.end-b.start >= liteMinBody) && !validJSON(val) {
		return false
	}
	u := p.body(k)
	*u = runtime.Unknown{Raw: val[:len(val):len(val)], ContentType: runtime.ContentTypeJSON}
	if response {
		ev.ResponseObject = u
	} else {
		ev.RequestObject = u
	}
	return true
}

var userFields = []string{"username", "uid", "groups", "extra"}

func userInfo(val []byte, u *authnv1.UserInfo) bool {
	return eachField(val, userFields, func(i int, v []byte) bool {
		switch i {
		case 0:
			return jsonString(v, &u.Username)
		case 1:
			return jsonString(v, &u.UID)
		case 2:
			return stringList(v, &u.Groups)
		default: // extra: rare outside of proxies and OIDC claims
			return generalJSON(v, &u.Extra)
		}
	})
}

var objectRefFields = []string{"resource", "namespace", "name", "uid", "apiGroup", "apiVersion", "resourceVersion", "subresource"}

func objectRef(val []byte, o *auditv1.ObjectReference) bool {
	dst := [...]*string{&o.Resource, &o.Namespace, &o.Name, (*string)(&o.UID), &o.APIGroup, &o.APIVersion, &o.ResourceVersion, &o.Subresource}
	read := [...]func([]byte, *string) bool{commonString, commonString, jsonString, jsonString, commonString, commonString, jsonString, commonString}
	return eachField(val, objectRefFields, func(i int, v []byte) bool { return read[i](v, dst[i]) })
}

// statusFields are the members of the responseStatus kube-apiserver writes
// on success ({"metadata":{},"code":200}) and on errors; one with list
// metadata or details with causes goes to the general decoder.
var statusFields = []string{"metadata", "code", "status", "message", "reason", "kind", "apiVersion", "details"}

// detailsFields are the members of an error's details but causes (a
// NotFound's or AlreadyExists's {"name":…,"kind":…}): the general decoder
// reads those with causes.
var detailsFields = []string{"name", "group", "kind", "uid", "retryAfterSeconds"}

func statusDetails(val []byte, d *metav1.StatusDetails) bool {
	return eachOnlyField(val, detailsFields, func(i int, v []byte) bool {
		switch i {
		case 0:
			return jsonString(v, &d.Name)
		case 1:
			return commonString(v, &d.Group)
		case 2:
			return commonString(v, &d.Kind)
		case 3:
			return jsonString(v, (*string)(&d.UID))
		default:
			n, ok := jsonInt(v)
			d.RetryAfterSeconds = int32(n)
			return ok && int64(d.RetryAfterSeconds) == n
		}
	})
}

func status(val []byte, st *metav1.Status) bool {
	simple := eachOnlyField(val, statusFields, func(i int, v []byte) bool {
		switch i {
		case 0:
			return bytes.Equal(v, []byte("{}")) || isNull(v)
		case 1:
			n, ok := jsonInt(v)
			st.Code = int32(n)
			return ok && int64(st.Code) == n
		case 2:
			return commonString(v, &st.Status)
		case 3:
			return jsonString(v, &st.Message)
		case 4:
			return commonString(v, (*string)(&st.Reason))
		case 5:
			return jsonString(v, &st.Kind)
		case 6:
			return jsonString(v, &st.APIVersion)
		default:
			if isNull(v) {
				return true
			}
			st.Details = new(metav1.StatusDetails)
			return statusDetails(v, st.Details)
		}
	})
	if simple {
		return true
	}
	*st = metav1.Status{}
	return generalJSON(val, st)
}

// microTime reads a timestamp as metav1.MicroTime's UnmarshalJSON does.
func microTime(val []byte, t *metav1.MicroTime) (ok bool) {
	if isNull(val) {
		t.Time = time.Time{}
		return true
	}
	if t.Time, ok = utcMicro(val); ok {
		return true
	}
	var s string
	if !jsonString(val, &s) {
		return false
	}
	pt, err := time.Parse(metav1.RFC3339Micro, s)
	if err != nil {
		return false
	}
	t.Time = pt.Local()
	return true
}

// utcMicro reads "2006-01-02T15:04:05.000000Z", the form kube-apiserver
// writes, as time.Parse(metav1.RFC3339Micro, …).Local() reads it, without
// the layout interpreter; false for any other form or an out-of-range part
// (which time.Parse refuses and time.Date would normalise), left to
// time.Parse.
func utcMicro(val []byte) (time.Time, bool) {
	if len(val) != 29 || val[0] != '"' || val[28] != '"' || val[27] != 'Z' ||
		val[5] != '-' || val[8] != '-' || val[11] != 'T' || val[14] != ':' || val[17] != ':' || val[20] != '.' {
		return time.Time{}, false
	}
	num := func(from, to int) int {
		n := 0
		for _, c := range val[from:to] {
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	year, month, day := num(1, 5), num(6, 8), num(9, 11)
	hour, minute, sec, micro := num(12, 14), num(15, 17), num(18, 20), num(21, 27)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 ||
		minute < 0 || minute > 59 || sec < 0 || sec > 59 || micro < 0 {
		return time.Time{}, false
	}
	if day > daysIn(month, year) { // 31 April, 29 February of a common year
		return time.Time{}, false
	}
	// time.Unix's result is in Local, as time.Parse(…).Local()'s is;
	// time.Date and then Local cost several times this, twice per event.
	unix := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec)
	return time.Unix(unix, int64(micro)*1000), true
}

// daysIn is the number of days of a month (1 to 12) of the proleptic
// Gregorian calendar.
func daysIn(month, year int) int {
	if month == 2 {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 30 + (month+month/8)%2 // 31 for January, March, …, July, August, October, December
}

// daysFromCivil is the number of days from 1970-01-01 to a date of the
// proleptic Gregorian calendar, for years 0 to 9999 (H. Hinnant's
// days_from_civil: years start in March, so the leap day comes last).
func daysFromCivil(year, month, day int) int64 {
	if month <= 2 {
		year--
	}
	era := year / 400
	if year < 0 {
		era = (year - 399) / 400
	}
	yoe := year - era*400                     // [0, 399]
	doy := (153*((month+9)%12)+2)/5 + day - 1 // [0, 365]
	doe := yoe*365 + yoe/4 - yoe/100 + doy    // [0, 146096]
	return int64(era)*146097 + int64(doe) - 719468
}

// stringList reads a JSON array of strings (null: nil, [] : empty).
func stringList(val []byte, dst *[]string) bool {
	if isNull(val) {
		*dst = nil
		return true
	}
	if val[0] != '[' {
		return false
	}
	out := make([]string, 0, 2)
	i := skipWS(val, 1)
	if i < len(val) && val[i] == ']' {
		*dst = out
		return skipWS(val, i+1) == len(val)
	}
	for i < len(val) {
		end := valueEnd(val, i)
		if end < 0 || val[i] != '"' {
			return false
		}
		var s string
		if !commonString(val[i:end], &s) {
			return false
		}
		out = append(out, s)
		i = skipWS(val, end)
		if i >= len(val) {
			return false
		}
		switch val[i] {
		case ']':
			*dst = out
			return skipWS(val, i+1) == len(val)
		case ',':
			i = skipWS(val, i+1)
		default:
			return false
		}
	}
	return false
}

// stringMap reads a JSON object of string values (null: nil).
func stringMap(val []byte, dst *map[string]string) bool {
	if isNull(val) {
		*dst = nil
		return true
	}
	m := make(map[string]string, 4)
	ok := eachKeyValue(val, func(key, v []byte) bool {
		if _, dup := m[string(key)]; dup || !utf8.Valid(key) {
			return false
		}
		var s string
		if !commonString(v, &s) || v[0] != '"' {
			return false
		}
		m[intern(key)] = s
		return true
	})
	if ok {
		*dst = m
	}
	return ok
}
