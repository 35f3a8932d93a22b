package record

import (
	"io"
	"net/url"
	"strings"

	jsoniter "github.com/json-iterator/go"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// Where an Effective object came from (Effective.From).
const (
	EffectiveResponse = "response"
	EffectiveRequest  = "request"
	EffectivePatch    = "patch"
	EffectivePartial  = "partial"
)

// PatchForm is the kind of body a patch request carried.
type PatchForm string

// The patch forms EffectiveOf tells apart.
const (
	PatchJSON      PatchForm = "json"
	PatchMerge     PatchForm = "merge"
	PatchStrategic PatchForm = "strategic"
	PatchApply     PatchForm = "apply"
)

// PatchOp is one operation of a patch. Op is a JSON patch operation (add,
// remove, replace, move, copy, test) or, for merge, strategic and apply
// bodies, "set" or "remove"; Path and From are JSON pointers.
type PatchOp struct {
	Op    string
	Path  string
	From  string
	Value any
}

// Effective is an audit record's object as it is after the request.
//
// A rule that judges what a write does must see the object as it is after
// the request, whatever form the request took: a create or update body is
// the whole object, but a patch body is only the change, and a JSON patch
// (RFC 6902) is not an object at all — a rule reading the request body as a
// map sees nothing in it, which is exactly how a privileged container or a
// wildcard grant slips past. EffectiveOf computes, for create, update and
// patch records:
//
//   - the object after the request, from the best source the record has:
//     the response body where the audit policy logged it (EffectiveResponse:
//     the stored object, after admission, whatever the patch form); else a
//     create/update body or a server-side apply body, which are whole
//     objects (EffectiveRequest); else the patch applied to the object before
//     it, when the caller knows that object (EffectivePatch), or to an empty
//     object (EffectivePartial): the parts the patch adds are still there to
//     be judged, the parts it left alone are missing. A JSON patch of which
//     some operation could not be applied is EffectivePartial too.
//   - the patch's operations, whatever the response says: for a JSON patch
//     its operations (op, path, from, value); for merge, strategic-merge and
//     apply bodies the leaf paths they set ("set") or delete ("remove", a
//     null in a merge patch). A rule about what a patch *adds* reads these.
//
// The audit event does not record the request's Content-Type, so the form is
// read off the body: an array is a JSON patch; an object with a "force" query
// parameter (only apply accepts it; kubectl and client-go always send it) or
// with both apiVersion and kind (apply requires them, other patches rarely
// carry them) is an apply body; any other object is a strategic merge patch
// for the kinds whose Go types are known (knownKinds) and a merge patch
// otherwise. On an empty base the two give the same object except for the
// strategic directives ($patch, $setElementOrder/…), which the strategic
// applier consumes.
type Effective struct {
	Object map[string]any // nil when the record has no usable body
	From   string         // EffectiveResponse | EffectiveRequest | EffectivePatch | EffectivePartial
	Form   PatchForm      // the patch form, "" for create and update
	Ops    []PatchOp      // the patch's operations, nil for create and update
}

// EffectiveOf returns the effective object of an audit event (see
// Effective), or nil when the event is not a create, update or patch or
// records no body. before is the object as it was before the request, when
// the caller knows it (nil otherwise); it is only read. An error names the
// body that could not be used; the result then holds what could be worked
// out without it (a response object is still used when the patch body is
// unreadable).
func EffectiveOf(ev *auditv1.Event, before map[string]any) (*Effective, error) {
	if ev == nil || (ev.Verb != "create" && ev.Verb != "update" && ev.Verb != "patch") {
		return nil, nil
	}
	kk, hasKind := lookupKind(ev.ObjectRef)
	out := &Effective{}
	patch, err := patchOf(ev, out, hasKind)
	if resp := responseObject(ev); resp != nil {
		out.Object, out.From = resp, EffectiveResponse
		return out, err
	}
	switch {
	case ev.Verb != "patch":
		if ev.RequestObject == nil || len(ev.RequestObject.Raw) == 0 {
			return nil, nil
		}
		body, derr := decodeBody(ev.RequestObject.Raw, "requestObject")
		if derr != nil {
			return nil, derr
		}
		obj, ok := body.(map[string]any)
		if !ok {
			return nil, &FieldError{Field: "requestObject", Msg: "not a JSON object"}
		}
		out.Object, out.From = obj, EffectiveRequest
	case err != nil:
		return out, err // Form names what could not be read
	case patch == nil:
		return nil, nil
	case out.Form == PatchApply:
		out.Object, out.From = patch.(map[string]any), EffectiveRequest
	default:
		out.Object, out.From, err = applyPatch(out.Form, patch, out.Ops, before, kk)
	}
	if hasKind && out.Object != nil {
		kk.fill(out.Object)
	}
	return out, err
}

// PatchOf is the part of EffectiveOf about the patch alone: Form and Ops
// of a patch event, without working out the object (Object and From are
// left empty), so without reading the response body; nil for other events
// and for a patch that records no body. The error is EffectiveOf's for the
// patch body.
func PatchOf(ev *auditv1.Event) (*Effective, error) {
	if !hasPatch(ev) {
		return nil, nil
	}
	_, hasKind := lookupKind(ev.ObjectRef)
	out := &Effective{}
	_, err := patchOf(ev, out, hasKind)
	return out, err
}

// hasPatch reports whether ev is a patch that records its body.
func hasPatch(ev *auditv1.Event) bool {
	return ev != nil && ev.Verb == "patch" && ev.RequestObject != nil && len(ev.RequestObject.Raw) > 0
}

// patchOf decodes a patch event's body and sets out's Form and Ops from it;
// nil for other events.
func patchOf(ev *auditv1.Event, out *Effective, hasKind bool) (any, error) {
	if !hasPatch(ev) {
		return nil, nil
	}
	patch, err := decodeBody(ev.RequestObject.Raw, "requestObject")
	if err != nil {
		return patch, err
	}
	out.Form = patchFormOf(patch, ev.RequestURI, hasKind)
	out.Ops, err = patchOps(out.Form, patch, ev.RequestObject.Raw)
	return patch, err
}

// responseObject is the response body when it is the object written: a
// failed request's body is a Status, and a response without kind is
// ambiguous enough to leave to the request.
func responseObject(ev *auditv1.Event) map[string]any {
	if ev.ResponseObject == nil || len(ev.ResponseObject.Raw) == 0 {
		return nil
	}
	if ev.ResponseStatus != nil && ev.ResponseStatus.Code >= 300 {
		return nil
	}
	obj, err := decodeStored(ev.ResponseObject.Raw)
	if err != nil {
		return nil
	}
	if k, _ := obj["kind"].(string); k == "" || k == "Status" {
		return nil
	}
	return obj
}

// decodeStored decodes a stored object (a response body) like decodeBody,
// without metadata.managedFields: that records which client last set which
// field, no rule judges it, and it is a large part of every stored object,
// decoded into many small maps. It returns nil for a body that is not an
// object.
func decodeStored(raw []byte) (map[string]any, error) {
	if obj, ok := parseStored(raw); ok {
		return obj, nil
	}
	// What parseStored leaves to a general decoder (see ParseObject), and
	// every error, which this path words.
	it := fastJSON.BorrowIterator(raw)
	defer fastJSON.ReturnIterator(it)
	var obj map[string]any
	if it.WhatIsNext() != jsoniter.ObjectValue {
		// Read, not Skip: Skip lets malformed numbers (-.0) through.
		it.Read()
	} else {
		obj = map[string]any{}
		it.ReadMapCB(func(it *jsoniter.Iterator, k string) bool {
			if k != "metadata" || it.WhatIsNext() != jsoniter.ObjectValue {
				obj[k] = it.Read()
				return true
			}
			md := map[string]any{}
			it.ReadMapCB(func(it *jsoniter.Iterator, k string) bool {
				if k == "managedFields" {
					// Skipped without building it, but checked: Skip alone
					// lets malformed numbers (-.0) through.
					if b := it.SkipAndReturnBytes(); it.Error == nil && !validJSON(b) {
						it.ReportError("decode", "metadata.managedFields is not valid JSON")
					}
				} else {
					md[k] = it.Read()
				}
				return true
			})
			obj[k] = md
			return true
		})
	}
	// What fastJSON.Unmarshal checks after the value: nothing but space,
	// which leaves the iterator at the end of the input (io.EOF).
	if it.Error == nil {
		it.WhatIsNext()
		if it.Error == nil {
			it.ReportError("decode", "bytes left after the value")
		}
	}
	if it.Error != nil && it.Error != io.EOF {
		return nil, &FieldError{Field: "responseObject", Msg: "not JSON: " + it.Error.Error()}
	}
	return obj, nil
}

func decodeBody(raw []byte, field string) (any, error) {
	var v any
	if err := fastJSON.Unmarshal(raw, &v); err != nil {
		return nil, &FieldError{Field: field, Msg: "not JSON: " + err.Error()}
	}
	return v, nil
}

// patchFormOf reads the patch form off the body and the request URI (see
// Effective for why it has to).
func patchFormOf(patch any, uri string, hasKind bool) PatchForm {
	obj, ok := patch.(map[string]any)
	if !ok {
		return PatchJSON
	}
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		if q, err := url.ParseQuery(uri[i+1:]); err == nil && q.Has("force") {
			return PatchApply
		}
	}
	if _, ok := obj["apiVersion"].(string); ok {
		if _, ok := obj["kind"].(string); ok {
			return PatchApply
		}
	}
	if hasKind {
		return PatchStrategic
	}
	return PatchMerge
}

// applyPatch applies a JSON, merge or strategic patch to a copy of before,
// or to an empty object when before is nil.
func applyPatch(form PatchForm, patch any, ops []PatchOp, before map[string]any, kk knownKind) (map[string]any, string, error) {
	from := EffectivePatch
	base := map[string]any{}
	if before != nil {
		base = deepCopyMap(before)
	} else {
		from = EffectivePartial
	}
	switch form {
	case PatchJSON:
		obj, all := applyJSONPatch(base, ops)
		if !all {
			from = EffectivePartial
		}
		return obj, from, nil
	case PatchStrategic:
		if obj, err := kk.strategic(base, patch.(map[string]any)); err == nil {
			return obj, from, nil
		}
		// A body the strategic applier rejects (a list where the schema
		// has a map, a malformed directive) is still judged as the merge
		// patch it resembles: a refused body must not hide its content.
		base = deepCopyMap(before)
	}
	obj, _ := mergePatch(base, patch).(map[string]any)
	return obj, from, nil
}
