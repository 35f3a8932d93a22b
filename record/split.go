package record

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// splitter cuts an input stream into JSON documents. It accepts, in any mix:
// NDJSON (one document per line, the audit log format), pretty-printed
// documents spanning many lines, and several documents on one line. It tracks
// bracket depth outside strings instead of asking a JSON parser where a
// document ends, so that one malformed line can be reported and skipped while
// the rest of the stream is still read — a json.Decoder cannot resynchronise
// after a syntax error.
//
// Heuristic for truncated lines: while a document is still open, a line that
// starts with '{' or '[' in column 0 begins a new document. Pretty-printers
// indent nested lines, so this never splits a well-formed document, and it
// stops a truncated NDJSON line (a crash mid-write) from swallowing the lines
// after it.
type splitter struct {
	br      *bufio.Reader
	max     int   // largest document accepted, in bytes
	line    int   // number of lines fully consumed
	offset  int64 // bytes fully consumed
	peeked  []byte
	peekOff int64
	peekLn  int
	hasPeek bool
	// probe is the top-level scan of the last document the fast path
	// returned (see doc.probe), members its buffer.
	probe   probe
	members [maxMembers]member
	// reuse has readLine read every line into lineBuf, the buffer of the line
	// before (DecodeOptions.ReuseBuffer), instead of a new one.
	reuse   bool
	lineBuf []byte
}

// maxMembers is how many top-level members of an object scanProbe records
// for the decoder; an audit event has at most 19.
const maxMembers = 24

// doc is one document cut from the stream, or the error that replaced it.
type doc struct {
	data   []byte
	line   int   // 1-based line where the document starts
	offset int64 // byte offset where the document starts
	err    error
	// probe, when set, is scanProbe's reading of data, done by the
	// splitter's fast path in place of a walk that only finds the end; it
	// is the splitter's and valid until its next call.
	probe *probe
}

func newSplitter(r io.Reader, maxDoc int, reuse bool) *splitter {
	size := 64 << 10
	// A webhook body or one log line is usually far smaller than the buffer
	// a stream wants; do not allocate 64 KiB to read 2 KiB.
	if l, ok := r.(interface{ Len() int }); ok && l.Len()+1 < size {
		size = max(l.Len()+1, 16)
	}
	return &splitter{br: bufio.NewReaderSize(r, size), max: maxDoc, reuse: reuse}
}

// readLine returns the next line without its newline, the line number and
// offset where it starts, in memory of its own or, with reuse, in lineBuf.
// A line longer than s.max is consumed and reported as ErrTooLarge without
// holding it in memory.
func (s *splitter) readLine() (line []byte, ln int, off int64, err error) {
	if s.hasPeek {
		s.hasPeek = false
		return s.peeked, s.peekLn, s.peekOff, nil
	}
	ln, off = s.line+1, s.offset
	var buf []byte
	if s.reuse {
		buf = s.lineBuf[:0]
	}
	tooLarge := false
	for {
		chunk, rerr := s.br.ReadSlice('\n')
		s.offset += int64(len(chunk))
		if !tooLarge {
			if len(buf)+len(chunk) > s.max+1 { // +1: the newline itself
				tooLarge, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		if rerr == bufio.ErrBufferFull {
			continue
		}
		if rerr != nil && rerr != io.EOF {
			return nil, ln, off, rerr
		}
		if rerr == io.EOF && len(chunk) == 0 && len(buf) == 0 && !tooLarge {
			return nil, ln, off, io.EOF
		}
		s.line++
		if tooLarge {
			return nil, ln, off, fmt.Errorf("line longer than %d bytes: %w", s.max, ErrTooLarge)
		}
		if s.reuse {
			s.lineBuf = buf
		}
		return bytes.TrimRight(buf, "\r\n"), ln, off, nil
	}
}

// next returns the next document, a doc whose err is set for a bad stretch of
// input (the caller reports it and calls next again), or io.EOF.
func (s *splitter) next() (doc, error) {
	var (
		acc      []byte
		start    doc
		depth    int
		inString bool
		escaped  bool
	)
	for {
		line, ln, off, err := s.readLine()
		if errors.Is(err, ErrTooLarge) {
			if acc != nil { // the document we were in cannot be whole any more
				return doc{line: start.line, offset: start.offset, err: err}, nil
			}
			return doc{line: ln, offset: off, err: err}, nil
		}
		if err == io.EOF {
			if acc != nil {
				return doc{line: start.line, offset: start.offset,
					err: &syntaxError{msg: "unexpected end of input inside a document", offset: int64(len(acc))}}, nil
			}
			return doc{}, io.EOF
		}
		if err != nil {
			return doc{}, err
		}
		if acc == nil {
			trimmed := bytes.TrimLeft(line, " \t")
			if len(trimmed) == 0 {
				continue
			}
			off += int64(len(line) - len(trimmed))
			line = trimmed
			start = doc{line: ln, offset: off}
			// Fast path for NDJSON: a line that is exactly one complete
			// object or array. An object the top-level scanner reads whole
			// is one (it checks that only whitespace follows), and the
			// decoder needs that scan anyway: the line is walked once, not
			// twice. Otherwise valueEnd finds the end; it jumps over strings
			// with IndexByte, several times faster than the byte loop below.
			if line[0] == '{' && len(line) <= s.max {
				s.probe = probe{members: s.members[:]}
				if scanProbe(line, &s.probe) == nil {
					e := len(bytes.TrimRight(line, " \t"))
					start.data, start.probe = line[:e:e], &s.probe
					return start, nil
				}
			}
			if (line[0] == '{' || line[0] == '[') && len(line) <= s.max {
				if e := valueEnd(line, 0); e > 0 && skipWS(line, e) == len(line) {
					// readLine returns a slice of its own per line (never
					// the bufio buffer; with reuse, the line buffer, which
					// the caller is done with by the next line), so the
					// record may keep it as is.
					start.data = line[:e:e]
					return start, nil
				}
			}
		} else if depth > 0 && len(line) > 0 && (line[0] == '{' || line[0] == '[') {
			// A new document starts while the previous one is still open: the
			// previous one was truncated. Keep this line for the next call.
			s.peeked, s.peekLn, s.peekOff, s.hasPeek = line, ln, off, true
			return doc{line: start.line, offset: start.offset,
				err: &syntaxError{msg: "document truncated (next document starts before it closes)", offset: int64(len(acc))}}, nil
		}
		// Scan the line for the point where the document closes.
		end := -1
		for i := 0; i < len(line); i++ {
			c := line[i]
			if inString {
				switch {
				case escaped:
					escaped = false
				case c == '\\':
					escaped = true
				case c == '"':
					inString = false
				}
				continue
			}
			switch c {
			case '"':
				inString = true
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth <= 0 {
					end = i + 1
				}
			}
			if end >= 0 {
				break
			}
		}
		if end < 0 && depth <= 0 {
			// A scalar or garbage line at top level: hand it over whole, the
			// document decoder names the problem.
			end = len(line)
		}
		if end < 0 {
			if len(acc)+len(line) > s.max {
				// Skip the rest of this oversized document by its closing depth
				// is not possible without holding it; report and resynchronise
				// at the next column-0 document start.
				return s.skipOversized(start)
			}
			acc = append(acc, line...)
			acc = append(acc, '\n')
			continue
		}
		acc = append(acc, line[:end]...)
		if rest := bytes.TrimLeft(line[end:], " \t,"); len(rest) > 0 {
			// Several documents on one line: keep the rest for the next call.
			s.peeked, s.peekLn, s.peekOff, s.hasPeek = rest, ln, off+int64(len(line)-len(rest)), true
		}
		if len(acc) > s.max {
			return doc{line: start.line, offset: start.offset,
				err: fmt.Errorf("document of %d bytes exceeds %d: %w", len(acc), s.max, ErrTooLarge)}, nil
		}
		start.data = acc
		return start, nil
	}
}

// skipOversized drops lines until the next one that starts a document in
// column 0, then reports the oversized document.
func (s *splitter) skipOversized(start doc) (doc, error) {
	for {
		line, ln, off, err := s.readLine()
		if err != nil && !errors.Is(err, ErrTooLarge) {
			if err != io.EOF {
				return doc{}, err
			}
			break
		}
		if err == nil && len(line) > 0 && (line[0] == '{' || line[0] == '[') {
			s.peeked, s.peekLn, s.peekOff, s.hasPeek = line, ln, off, true
			break
		}
	}
	return doc{line: start.line, offset: start.offset,
		err: fmt.Errorf("document exceeds %d bytes: %w", s.max, ErrTooLarge)}, nil
}
