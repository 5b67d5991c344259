package imageio

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
)

// gifFrameInfo is what PIL uses of a GIF's first frame beyond its pixels: the colour
// table in force (RGB triples) and the transparent index (-1 for none).
type gifFrameInfo struct {
	table       []byte
	transparent int
}

// parseGIFFirstFrame walks the GIF blocks up to the first image descriptor. Go's decoder
// replaces the transparent palette entry with transparent black, but PIL keeps its
// colour, so the table is read here.
func parseGIFFirstFrame(data []byte) (gifFrameInfo, error) {
	info := gifFrameInfo{transparent: -1}
	if len(data) < 13 {
		return info, errors.New("gif: short header")
	}
	var global []byte
	pos := 13
	if flags := data[10]; flags&0x80 != 0 {
		n := 3 << (1 + flags&7)
		if pos+n > len(data) {
			return info, errors.New("gif: truncated global colour table")
		}
		global, pos = data[pos:pos+n], pos+n
	}
	for pos < len(data) {
		switch data[pos] {
		case 0x21: // extension
			if pos+2 > len(data) {
				return info, errors.New("gif: truncated extension")
			}
			label := data[pos+1]
			pos += 2
			if label == 0xf9 && pos+5 < len(data) && data[pos] == 4 {
				info.transparent = -1
				if data[pos+1]&1 != 0 {
					info.transparent = int(data[pos+4])
				}
			}
			for { // data sub-blocks
				if pos >= len(data) {
					return info, errors.New("gif: truncated extension")
				}
				n := int(data[pos])
				pos += 1 + n
				if n == 0 {
					break
				}
			}
		case 0x2c: // image descriptor
			if pos+10 > len(data) {
				return info, errors.New("gif: truncated image descriptor")
			}
			fields := data[pos+9]
			pos += 10
			info.table = global
			if fields&0x80 != 0 {
				n := 3 << (1 + fields&7)
				if pos+n > len(data) {
					return info, errors.New("gif: truncated local colour table")
				}
				info.table = data[pos : pos+n]
			}
			if info.table == nil {
				return info, newError(ReasonUnsupported, FormatGIF, errors.New("GIF without a colour table"))
			}
			return info, nil
		case 0x3b:
			return info, errors.New("gif: no image before the trailer")
		default:
			return info, fmt.Errorf("gif: unknown block type 0x%02x", data[pos])
		}
	}
	return info, errors.New("gif: no image")
}

// decodeGIF returns the first frame drawn on the logical screen as PIL 9.4 loads it:
// the area outside the frame holds the transparent index if there is one, else index 0,
// and every index shows its colour from the frame's colour table.
func decodeGIF(data []byte, cfg image.Config) (*RGB, error) {
	info, err := parseGIFFirstFrame(data)
	if err != nil {
		return nil, err
	}
	m, err := gif.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	frame, ok := m.(*image.Paletted)
	if !ok {
		return nil, fmt.Errorf("gif: decoder returned %T", m)
	}
	var pal [256][3]uint8
	for i := 0; i < 256 && 3*i+2 < len(info.table); i++ {
		pal[i] = [3]uint8{info.table[3*i], info.table[3*i+1], info.table[3*i+2]}
	}
	out := NewRGB(cfg.Width, cfg.Height)
	fill := pal[0]
	if info.transparent >= 0 {
		fill = pal[info.transparent]
	}
	fr := frame.Rect.Intersect(out.Bounds())
	for y := 0; y < out.H; y++ {
		d := out.Row(y)
		for x := 0; x < out.W; x++ {
			c := fill
			if (image.Point{x, y}).In(fr) {
				c = pal[frame.Pix[frame.PixOffset(x, y)]]
			}
			d[3*x], d[3*x+1], d[3*x+2] = c[0], c[1], c[2]
		}
	}
	return out, nil
}
