package collab

import "errors"

// MaxDocIDBytes is the longest document id.
const MaxDocIDBytes = 128

// ValidDocID checks a document id: 1-128 bytes of letters, digits and "_ - : .", except "."
// and "..", which browsers and proxies rewrite as path segments (a client could never reach
// them by URL).
func ValidDocID(id string) error {
	if id == "" {
		return errors.New("document id is empty")
	}
	if id == "." || id == ".." {
		return errors.New(`document id may not be "." or ".." (path segments that browsers and proxies rewrite)`)
	}
	if len(id) > MaxDocIDBytes {
		return errors.New("document id is longer than 128 bytes")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_', c == '-', c == ':', c == '.':
		default:
			return errors.New("document id may hold only letters, digits and _ - : .")
		}
	}
	return nil
}
