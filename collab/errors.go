package collab

import "fmt"

// CloseError ends a connection: a WebSocket close code with a short reason for the client.
// The table below is the contract of docs/protocol.md; internals never go in Reason.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string { return fmt.Sprintf("close %d: %s", e.Code, e.Reason) }

// The close codes of the native protocol (DESIGN.md section 3, docs/protocol.md).
const (
	CodeNormal          = 1000 // normal close
	CodeTooBig          = 1009 // frame larger than the read limit
	CodeInternal        = 1011 // internal error; details only in the server log
	CodeRestart         = 1012 // instance restarting or draining: reconnect, preferably elsewhere
	CodeProtocol        = 4000 // protocol violation after repeated bad frames
	CodeUnauthorized    = 4001 // token missing, invalid or expired
	CodeForbidden       = 4003 // token valid but not allowed here
	CodeSlowConsumer    = 4008 // the client did not read fast enough
	CodeRateLimited     = 4029 // rate limit exceeded persistently
	CodeDocumentFull    = 4029 // the document has reached its member limit
	maxCloseReasonBytes = 123  // RFC 6455: the close payload is at most 125 bytes, 2 of them the code
)

// Close errors the core hands out; the web layer adds its own for auth and framing.
var (
	ErrShutdown     = &CloseError{CodeRestart, "instance shutting down, reconnect"}
	ErrSlowConsumer = &CloseError{CodeSlowConsumer, "slow consumer: outbound queue full"}
	ErrRateLimited  = &CloseError{CodeRateLimited, "rate limit exceeded persistently"}
	ErrProtocol     = &CloseError{CodeProtocol, "too many bad frames"}
	ErrDocumentFull = &CloseError{CodeDocumentFull, "document is full"}
	ErrInternal     = &CloseError{CodeInternal, "internal error"}
)

// NewCloseError returns a close error, cutting reason to what a close frame can carry.
func NewCloseError(code int, reason string) *CloseError {
	if len(reason) > maxCloseReasonBytes {
		reason = reason[:maxCloseReasonBytes]
	}
	return &CloseError{Code: code, Reason: reason}
}

// Error is a recoverable problem with one request: it becomes an `error` frame with a
// machine code and the connection stays open.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// The machine codes of `error` frames (docs/protocol.md).
const (
	ErrCodeBadJSON      = "bad_json"          // the frame is not a JSON object with a string "type"
	ErrCodeUnknownType  = "unknown_type"      // the "type" is not one this server knows
	ErrCodeBadPayload   = "bad_payload"       // the payload has the wrong shape for its type
	ErrCodeTooLarge     = "payload_too_large" // the payload exceeds the limit of its type
	ErrCodeRateLimited  = "rate_limited"      // too many messages; this one was dropped
	ErrCodeForbidden    = "forbidden"         // the token does not allow this action
	ErrCodeBadToken     = "bad_token"         // an auth message whose token cannot be used
	ErrCodePresenceFull = "presence_full"     // the document's presence would exceed its size limit
)

// Errorf returns an Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
