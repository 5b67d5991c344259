package imageio

import "errors"

// Reasons an image is rejected. They are stable identifiers written to the rejects file;
// never change their spelling.
const (
	// ReasonMissing: the file does not exist.
	ReasonMissing = "missing"
	// ReasonEmpty: the file has no bytes.
	ReasonEmpty = "empty"
	// ReasonNotImage: the content is not a recognised image format (e.g. text, HTML).
	ReasonNotImage = "not_image"
	// ReasonTooLarge: the file exceeds Limits.MaxBytes or the image exceeds
	// Limits.MaxPixels.
	ReasonTooLarge = "too_large"
	// ReasonCorrupt: the data is truncated or malformed.
	ReasonCorrupt = "corrupt"
	// ReasonUnsupported: a known format, or a variant of one, this decoder cannot read
	// (BMP, TIFF, HEIF/AVIF, animated WebP, 12-bit JPEG, ...).
	ReasonUnsupported = "unsupported"
	// ReasonIO: reading the file failed for another reason (permissions, I/O error).
	ReasonIO = "io"
)

// Error is a rejected image. Reason is one of the Reason… constants (other packages, such
// as preprocess, add their own); Format is the sniffed format when known.
type Error struct {
	Reason string
	Format string
	Err    error
}

// Error returns e.g. "corrupt jpeg image: unexpected EOF", or "missing: open x.jpg: no
// such file or directory" when the format is unknown.
func (e *Error) Error() string {
	prefix := e.Reason
	if e.Format != "" {
		prefix += " " + e.Format + " image"
	}
	if e.Err == nil {
		return prefix
	}
	return prefix + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the Reason of the first *Error in err's chain, or "" when err is nil
// or carries no *Error.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func newError(reason, format string, err error) *Error {
	return &Error{Reason: reason, Format: format, Err: err}
}
