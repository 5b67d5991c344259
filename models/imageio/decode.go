package imageio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/image/webp"
)

// Default limits.
const (
	// DefaultMaxPixels is the largest width×height decoded by default (40 megapixels).
	DefaultMaxPixels = 40_000_000
	// DefaultMaxBytes is the largest encoded file read by default (64 MiB).
	DefaultMaxBytes = 64 << 20
)

// Limits bound the work done for one image. A zero or negative field means its default.
type Limits struct {
	// MaxPixels is the largest width×height accepted; larger images are refused from
	// their header, before decoding.
	MaxPixels int64
	// MaxBytes is the largest encoded size accepted.
	MaxBytes int64
}

// DefaultLimits returns Limits with every field at its default.
func DefaultLimits() Limits {
	return Limits{MaxPixels: DefaultMaxPixels, MaxBytes: DefaultMaxBytes}
}

func (l Limits) withDefaults() Limits {
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	return l
}

// DecodeConfig reads only the header of an image: its width and height in pixels (for a
// GIF, the logical screen) and its format. Errors are *Error.
func DecodeConfig(data []byte) (w, h int, format string, err error) {
	format, err = sniffSupported(data)
	if err != nil {
		return 0, 0, format, err
	}
	cfg, err := decodeConfig(data, format)
	if err != nil {
		return 0, 0, format, err
	}
	return cfg.Width, cfg.Height, format, nil
}

// Decode decodes an image held in memory into packed RGB, refusing it (before any pixel
// buffer is allocated) when it breaks lim. It returns the format it recognised from the
// content. Errors are *Error; ReasonOf gives the reason for the rejects file.
func Decode(data []byte, lim Limits) (img *RGB, format string, err error) {
	lim = lim.withDefaults()
	if int64(len(data)) > lim.MaxBytes {
		return nil, Sniff(data), newError(ReasonTooLarge, Sniff(data),
			fmt.Errorf("%d bytes exceed the limit of %d bytes", len(data), lim.MaxBytes))
	}
	format, err = sniffSupported(data)
	if err != nil {
		return nil, format, err
	}
	cfg, err := decodeConfig(data, format)
	if err != nil {
		return nil, format, err
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > lim.MaxPixels {
		return nil, format, newError(ReasonTooLarge, format,
			fmt.Errorf("%dx%d = %d pixels exceed the limit of %d pixels", cfg.Width, cfg.Height, px, lim.MaxPixels))
	}
	defer func() {
		// The decoders are meant to return errors on bad input; a panic is still a bad
		// file, not a reason to take the worker down.
		if r := recover(); r != nil {
			img, err = nil, newError(ReasonCorrupt, format, fmt.Errorf("decoder panic: %v", r))
		}
	}()
	switch format {
	case FormatJPEG:
		img, err = decodeJPEG(data)
	case FormatPNG:
		img, err = decodePNG(data)
	case FormatGIF:
		img, err = decodeGIF(data, cfg)
	case FormatWebP:
		img, err = decodeWebP(data)
	}
	if err != nil {
		return nil, format, classify(format, err)
	}
	if img.W != cfg.Width || img.H != cfg.Height {
		return nil, format, newError(ReasonCorrupt, format,
			fmt.Errorf("decoded %dx%d pixels but the header says %dx%d", img.W, img.H, cfg.Width, cfg.Height))
	}
	return img, format, nil
}

// ReadFile reads an image file, refusing files larger than lim.MaxBytes without reading
// them. A file that does not exist is ReasonMissing; an empty one ReasonEmpty.
func ReadFile(path string, lim Limits) ([]byte, error) {
	lim = lim.withDefaults()
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, newError(ReasonMissing, "", err)
		}
		return nil, newError(ReasonIO, "", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		if st.IsDir() {
			return nil, newError(ReasonIO, "", fmt.Errorf("%s is a directory", path))
		}
		if st.Size() > lim.MaxBytes {
			return nil, newError(ReasonTooLarge, "",
				fmt.Errorf("%s: %d bytes exceed the limit of %d bytes", path, st.Size(), lim.MaxBytes))
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, lim.MaxBytes+1))
	if err != nil {
		return nil, newError(ReasonIO, "", fmt.Errorf("%s: %w", path, err))
	}
	if int64(len(data)) > lim.MaxBytes {
		return nil, newError(ReasonTooLarge, "", fmt.Errorf("%s: more than %d bytes", path, lim.MaxBytes))
	}
	if len(data) == 0 {
		return nil, newError(ReasonEmpty, "", fmt.Errorf("%s has no bytes", path))
	}
	return data, nil
}

// DecodeFile reads and decodes an image file (see ReadFile and Decode). Errors name the
// path.
func DecodeFile(path string, lim Limits) (*RGB, string, error) {
	data, err := ReadFile(path, lim)
	if err != nil {
		return nil, "", err
	}
	img, format, err := Decode(data, lim)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, format, &Error{Reason: e.Reason, Format: e.Format, Err: fmt.Errorf("%s: %w", path, e.Err)}
		}
		return nil, format, fmt.Errorf("%s: %w", path, err)
	}
	return img, format, nil
}

// sniffSupported sniffs data and turns an empty, unknown or unsupported format into an
// *Error.
func sniffSupported(data []byte) (string, error) {
	if len(data) == 0 {
		return "", newError(ReasonEmpty, "", errors.New("no bytes"))
	}
	format := Sniff(data)
	switch {
	case format == "":
		n := min(len(data), 8)
		return "", newError(ReasonNotImage, "", fmt.Errorf("unrecognised content (first bytes %q)", data[:n]))
	case !supported(format):
		return format, newError(ReasonUnsupported, format, errors.New("format not supported (decodable: JPEG, PNG, GIF, WebP)"))
	}
	return format, nil
}

func decodeConfig(data []byte, format string) (image.Config, error) {
	var (
		cfg image.Config
		err error
	)
	r := bytes.NewReader(data)
	switch format {
	case FormatJPEG:
		cfg, err = jpeg.DecodeConfig(r)
	case FormatPNG:
		cfg, err = png.DecodeConfig(r)
	case FormatGIF:
		cfg, err = gif.DecodeConfig(r)
	case FormatWebP:
		if isAnimatedWebP(data) {
			return cfg, newError(ReasonUnsupported, format, errors.New("animated WebP"))
		}
		cfg, err = webp.DecodeConfig(r)
	}
	if err != nil {
		return cfg, classify(format, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return cfg, newError(ReasonCorrupt, format, fmt.Errorf("header gives an empty size %dx%d", cfg.Width, cfg.Height))
	}
	return cfg, nil
}

// classify maps a decoder error to a reason.
func classify(format string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	var (
		jpegUnsupported jpeg.UnsupportedError
		pngUnsupported  png.UnsupportedError
	)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return newError(ReasonCorrupt, format, fmt.Errorf("truncated: %w", err))
	case errors.As(err, &jpegUnsupported), errors.As(err, &pngUnsupported):
		return newError(ReasonUnsupported, format, err)
	case strings.Contains(err.Error(), "unsupported"), strings.Contains(err.Error(), "not implemented"):
		// gif and webp report unsupported variants with plain errors.
		return newError(ReasonUnsupported, format, err)
	}
	return newError(ReasonCorrupt, format, err)
}

// isAnimatedWebP reports whether a WebP file has a VP8X chunk with the animation flag.
func isAnimatedWebP(data []byte) bool {
	// RIFF header (12 bytes), then the first chunk: FourCC, size, payload.
	return len(data) >= 21 && string(data[12:16]) == "VP8X" && data[20]&0x02 != 0
}

// pngHeader returns the bit depth and colour type from a PNG's IHDR chunk.
func pngHeader(data []byte) (depth, colorType byte, ok bool) {
	if len(data) < 29 || string(data[12:16]) != "IHDR" || binary.BigEndian.Uint32(data[8:12]) != 13 {
		return 0, 0, false
	}
	return data[24], data[25], true
}

var pngIEND = []byte{0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82}

func decodePNG(data []byte) (*RGB, error) {
	m, err := png.Decode(bytes.NewReader(data))
	if errors.Is(err, io.ErrUnexpectedEOF) && !bytes.HasSuffix(data, pngIEND) {
		// PIL stops reading after the image data and accepts a file whose IEND chunk is
		// missing; Go wants IEND. Retry with it appended: a file truncated inside its
		// image data still fails.
		m, err = png.Decode(io.MultiReader(bytes.NewReader(data), bytes.NewReader(pngIEND)))
	}
	if err != nil {
		return nil, err
	}
	depth, colorType, _ := pngHeader(data)
	// PIL opens 16-bit greyscale as mode "I" and its conversion to RGB clips values
	// above 255 instead of scaling them.
	grey16Clip := depth == 16 && colorType == 0
	return fromImage(m, grey16Clip), nil
}

func decodeJPEG(data []byte) (*RGB, error) {
	m, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if ycc, ok := m.(*image.YCbCr); ok {
		return jpegYCbCrToRGB(ycc), nil
	}
	return fromImage(m, false), nil
}

func decodeWebP(data []byte) (*RGB, error) {
	m, err := webp.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *image.YCbCr:
		return webpYCbCrToRGB(m)
	case *image.NYCbCrA:
		// Alpha is dropped; the colour underneath is not premultiplied.
		return webpYCbCrToRGB(&m.YCbCr)
	}
	return fromImage(m, false), nil
}
