package record

import (
	"fmt"
	"strconv"
	"strings"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
)

// Bounds of the lenient JSON patch applier. A patch comes from whoever can
// write to the API server, and the applier runs on every patch record a rule
// needs, so neither an index nor a copy may make it allocate without limit:
// an index more than maxPatchPad past the end of an array, and copies beyond
// maxCopiedNodes values in one patch, are not applied (the result is then
// partial). Real pod specs and role rule lists are far below both.
const (
	maxPatchPad    = 1024
	maxCopiedNodes = 1 << 16
)

// patchOps lists a patch's operations: a JSON patch's own, or the leaf paths
// a merge, strategic or apply body sets or removes.
func patchOps(form PatchForm, patch any, raw []byte) ([]PatchOp, error) {
	if form != PatchJSON {
		var ops []PatchOp
		leafOps(patch, "", &ops)
		return ops, nil
	}
	p, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		return nil, &FieldError{Field: "requestObject", Msg: "json patch: " + err.Error()}
	}
	ops := make([]PatchOp, 0, len(p))
	for i, o := range p {
		op := PatchOp{Op: o.Kind()}
		if op.Path, err = o.Path(); err != nil {
			return nil, &FieldError{Field: fmt.Sprintf("requestObject[%d].path", i), Msg: err.Error()}
		}
		switch op.Op {
		case "add", "replace", "test":
			if op.Value, err = o.ValueInterface(); err != nil {
				return nil, &FieldError{Field: fmt.Sprintf("requestObject[%d].value", i), Msg: err.Error()}
			}
		case "move", "copy":
			if op.From, err = o.From(); err != nil {
				return nil, &FieldError{Field: fmt.Sprintf("requestObject[%d].from", i), Msg: err.Error()}
			}
		case "remove":
		default:
			return nil, &FieldError{Field: fmt.Sprintf("requestObject[%d].op", i), Msg: fmt.Sprintf("unknown operation %q", op.Op)}
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// leafOps walks a merge-style body: every scalar, empty object or empty list
// is a "set" of its path, every null a "remove". Strategic directives
// ($patch, $setElementOrder/…, $retainKeys, $deleteFromPrimitiveList/…)
// instruct the merge and are not content, so they are skipped.
func leafOps(v any, path string, ops *[]PatchOp) {
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 && path != "" {
			*ops = append(*ops, PatchOp{Op: "set", Path: path, Value: t})
		}
		for k, c := range t {
			if !strings.HasPrefix(k, "$") {
				leafOps(c, path+"/"+escapePointer(k), ops)
			}
		}
	case []any:
		if len(t) == 0 {
			*ops = append(*ops, PatchOp{Op: "set", Path: path, Value: t})
		}
		for i, c := range t {
			leafOps(c, path+"/"+strconv.Itoa(i), ops)
		}
	case nil:
		*ops = append(*ops, PatchOp{Op: "remove", Path: path})
	default:
		*ops = append(*ops, PatchOp{Op: "set", Path: path, Value: t})
	}
}

// ObjectFromOps builds the object a list of operations describes on an empty
// object: what a patch adds, whatever its form. A "set" (merge-style leaf)
// is an add.
func ObjectFromOps(ops []PatchOp) map[string]any {
	obj, _ := applyJSONPatch(map[string]any{}, ops)
	return obj
}

// applyJSONPatch applies ops to doc, leniently: the object before the patch
// is often unknown (doc is then empty), so the applier does what the patch
// would do to any object that has the paths it names. Missing parents of an
// add or replace are created (an array where the next segment is an index),
// a replace of a missing member adds it, a remove or a move of a missing
// member and a test do nothing (a failed test fails the request, which the
// API server has already decided). It reports whether every operation took
// effect; the ones that cannot (a path into a scalar, an index past the
// bounds above) are skipped rather than ending the patch, so the rest of it
// is still judged.
func applyJSONPatch(doc map[string]any, ops []PatchOp) (map[string]any, bool) {
	a := &lenient{copyBudget: maxCopiedNodes}
	var root any = doc
	all := true
	for _, op := range ops {
		segs, ok := splitPointer(op.Path)
		if !ok {
			all = false
			continue
		}
		switch op.Op {
		case "add", "replace", "set":
			// A copy: the operations stay as the request sent them when
			// later operations change what this one added.
			root, ok = a.set(root, segs, deepCopy(op.Value), op.Op == "add")
		case "remove":
			root, ok = remove(root, segs)
		case "move", "copy":
			var from []string
			var v any
			if from, ok = splitPointer(op.From); ok {
				v, ok = get(root, from)
			}
			if ok && op.Op == "move" {
				root, _ = remove(root, from)
			}
			if ok && op.Op == "copy" {
				v, ok = a.copy(v)
			}
			if ok {
				root, ok = a.set(root, segs, v, true)
			}
		case "test":
		default:
			ok = false
		}
		all = all && ok
	}
	obj, isMap := root.(map[string]any)
	if !isMap {
		// A patch that replaces the whole document with a non-object
		// leaves no object to judge.
		return map[string]any{}, false
	}
	return obj, all
}

type lenient struct {
	copyBudget int // values copies may still create
}

// set stores v at segs below cur and returns the (possibly new) cur. insert
// makes an index into an array insert before it, as add does, rather than
// overwrite.
func (a *lenient) set(cur any, segs []string, v any, insert bool) (any, bool) {
	if len(segs) == 0 {
		return v, true
	}
	seg := segs[0]
	switch c := cur.(type) {
	case map[string]any:
		child, ok := a.set(c[seg], segs[1:], v, insert)
		if ok {
			c[seg] = child
		}
		return c, ok
	case []any:
		i, ok := arrayIndex(seg, len(c))
		if !ok {
			return c, false
		}
		if len(segs) == 1 && insert {
			c = pad(c, i)
			c = append(c, nil)
			copy(c[i+1:], c[i:])
			c[i] = v
			return c, true
		}
		c = pad(c, i+1)
		child, ok := a.set(c[i], segs[1:], v, insert)
		if ok {
			c[i] = child
		}
		return c, ok
	case nil:
		// A missing parent: build the container the segment asks for.
		if seg == "-" || isIndex(seg) {
			return a.set([]any{}, segs, v, insert)
		}
		return a.set(map[string]any{}, segs, v, insert)
	}
	return cur, false // a path through a scalar
}

// copy deep-copies v within the patch's copy budget.
func (a *lenient) copy(v any) (any, bool) {
	n := countNodes(v, a.copyBudget+1)
	if n > a.copyBudget {
		return nil, false
	}
	a.copyBudget -= n
	return deepCopy(v), true
}

// arrayIndex resolves an array segment: "-" is the end, a number may lie up
// to maxPatchPad past the end (pad fills the gap with nulls).
func arrayIndex(seg string, n int) (int, bool) {
	if seg == "-" {
		return n, true
	}
	if !isIndex(seg) {
		return 0, false
	}
	i, err := strconv.Atoi(seg)
	if err != nil || i > n+maxPatchPad {
		return 0, false
	}
	return i, true
}

// isIndex is RFC 6901's array index: digits, no leading zero.
func isIndex(seg string) bool {
	if seg == "" || len(seg) > 9 || (len(seg) > 1 && seg[0] == '0') {
		return false
	}
	for i := 0; i < len(seg); i++ {
		if seg[i] < '0' || seg[i] > '9' {
			return false
		}
	}
	return true
}

func pad(c []any, n int) []any {
	for len(c) < n {
		c = append(c, nil)
	}
	return c
}

func get(cur any, segs []string) (any, bool) {
	for _, seg := range segs {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[seg]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, ok := arrayIndex(seg, len(c))
			if !ok || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

func remove(cur any, segs []string) (any, bool) {
	if len(segs) == 0 {
		return cur, false // removing the whole document is not an object change to judge
	}
	switch c := cur.(type) {
	case map[string]any:
		if len(segs) == 1 {
			_, ok := c[segs[0]]
			delete(c, segs[0])
			return c, ok
		}
		child, ok := remove(c[segs[0]], segs[1:])
		if ok {
			c[segs[0]] = child
		}
		return c, ok
	case []any:
		i, ok := arrayIndex(segs[0], len(c))
		if !ok || i >= len(c) {
			return c, false
		}
		if len(segs) == 1 {
			return append(c[:i], c[i+1:]...), true
		}
		child, ok := remove(c[i], segs[1:])
		if ok {
			c[i] = child
		}
		return c, ok
	}
	return cur, false
}

// splitPointer splits an RFC 6901 JSON pointer into unescaped segments.
func splitPointer(p string) ([]string, bool) {
	if p == "" {
		return nil, true
	}
	if p[0] != '/' {
		return nil, false
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		if strings.Contains(s, "~") {
			segs[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(s)
		}
	}
	return segs, true
}

func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// mergePatch applies an RFC 7386 merge patch to target and returns the
// result (target is changed in place when it is an object).
func mergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
			continue
		}
		tm[k] = mergePatch(tm[k], v)
	}
	return tm
}

func deepCopyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return deepCopy(m).(map[string]any)
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, c := range t {
			out[k] = deepCopy(c)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, c := range t {
			out[i] = deepCopy(c)
		}
		return out
	}
	return v
}

// countNodes counts the values in v, stopping once it passes limit.
func countNodes(v any, limit int) int {
	n := 1
	switch t := v.(type) {
	case map[string]any:
		for _, c := range t {
			if n > limit {
				break
			}
			n += countNodes(c, limit-n)
		}
	case []any:
		for _, c := range t {
			if n > limit {
				break
			}
			n += countNodes(c, limit-n)
		}
	}
	return n
}
