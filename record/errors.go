package record

import (
	"errors"
	"fmt"
	"strings"
)

// FieldError says which field of an input document is wrong.
type FieldError struct {
	Field string // dotted path, e.g. "items[3].user.username"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// DecodeError locates a failure in an input stream: the file (or stream name),
// the 1-based line where the document started, its byte offset, and the
// underlying error (often a *FieldError). Decoders return it for one bad
// document and carry on with the next, so one bad line never costs the others.
type DecodeError struct {
	File   string
	Line   int
	Offset int64
	// End is where decoding resumed for a stream (Decoder.Next): the bad
	// stretch is [Offset, End), which can span several lines (a truncated
	// line runs on until the next document starts). 0 when unknown.
	End int64
	Err error
	// Item is the raw item of the outermost list the failure is in (an
	// EventList's or a JSON array's element), nil when it is not in a list:
	// what a receiver keeps as the dead letter instead of the whole input.
	Item []byte
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	} else {
		b.WriteString("<input>")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Reason is a short, stable, low-cardinality reason for metrics labels and
// dead-letter headers (e.g. "syntax", "field", "too_large", "unknown_kind").
func (e *DecodeError) Reason() string { return Reason(e.Err) }

// Sentinel errors a decoder can wrap.
var (
	// ErrTooLarge: a document exceeds the decoder's size limit.
	ErrTooLarge = errors.New("document too large")
	// ErrUnknownKind: valid JSON that is none of the inputs kubesift reads.
	ErrUnknownKind = errors.New("not an audit event, an Event, or a list of them")
	// ErrSchema: a wire envelope with a schema version this build does not know.
	ErrSchema = errors.New("unsupported record schema")
)

// The reasons Reason returns (metric labels, dead-letter reasons).
const (
	ReasonTooLarge    = "too_large"
	ReasonUnknownKind = "unknown_kind"
	ReasonSchema      = "schema"
	ReasonSyntax      = "syntax"
	ReasonField       = "field"
	ReasonOther       = "other"
)

// DecodeReasons is every reason Reason returns, for metrics that export
// each at 0 before the first bad input.
var DecodeReasons = []string{ReasonTooLarge, ReasonUnknownKind, ReasonSchema, ReasonSyntax, ReasonField, ReasonOther}

// Reason maps an error to a metric-friendly reason (one of DecodeReasons).
func Reason(err error) string {
	var fe *FieldError
	var se *syntaxError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTooLarge):
		return ReasonTooLarge
	case errors.Is(err, ErrUnknownKind):
		return ReasonUnknownKind
	case errors.Is(err, ErrSchema):
		return ReasonSchema
	case errors.As(err, &se):
		return ReasonSyntax
	case errors.As(err, &fe):
		return ReasonField
	}
	return ReasonOther
}

// syntaxError is a JSON syntax error with its offset inside the document.
type syntaxError struct {
	msg    string
	offset int64
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d of the document: %s", e.offset, e.msg)
}
