package imageio

import (
	"bytes"
	"encoding/binary"
)

// Formats Decode reads.
const (
	FormatJPEG = "jpeg"
	FormatPNG  = "png"
	FormatGIF  = "gif"
	FormatWebP = "webp"
)

// Sniff names the format of data from its first bytes: one of the Format… constants, a
// recognised but unsupported image format ("bmp", "tiff", "heif", "avif", "psd", "jp2",
// "jxl", "ico"), or "" when the content is not a known image format.
func Sniff(data []byte) string {
	switch {
	case len(data) >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff:
		return FormatJPEG
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return FormatPNG
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return FormatGIF
	case len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		return FormatWebP
	case len(data) >= 18 && string(data[:2]) == "BM" && isBMPHeaderSize(binary.LittleEndian.Uint32(data[14:18])):
		return "bmp"
	case bytes.HasPrefix(data, []byte("II*\x00")), bytes.HasPrefix(data, []byte("MM\x00*")):
		return "tiff"
	case len(data) >= 12 && string(data[4:8]) == "ftyp":
		switch string(data[8:12]) {
		case "heic", "heix", "hevc", "hevx", "heim", "heis", "mif1", "msf1":
			return "heif"
		case "avif", "avis":
			return "avif"
		}
	case bytes.HasPrefix(data, []byte("8BPS")):
		return "psd"
	case bytes.HasPrefix(data, []byte("\x00\x00\x00\x0cjP  \r\n\x87\n")), bytes.HasPrefix(data, []byte("\xff\x4f\xff\x51")):
		return "jp2"
	case bytes.HasPrefix(data, []byte("\xff\x0a")), bytes.HasPrefix(data, []byte("\x00\x00\x00\x0cJXL \r\n\x87\n")):
		return "jxl"
	case len(data) >= 6 && bytes.HasPrefix(data, []byte("\x00\x00\x01\x00")) && data[4]|data[5] != 0:
		return "ico"
	}
	return ""
}

func isBMPHeaderSize(n uint32) bool {
	switch n {
	case 12, 16, 40, 52, 56, 64, 108, 124:
		return true
	}
	return false
}

// supported reports whether Decode reads the format.
func supported(format string) bool {
	switch format {
	case FormatJPEG, FormatPNG, FormatGIF, FormatWebP:
		return true
	}
	return false
}
