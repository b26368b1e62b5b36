package collab

import "errors"

// MaxDocIDBytes is the longest document id.
const MaxDocIDBytes = 128

// ValidDocID checks a document id: 1-128 bytes of letters, digits and "_ - : .".
func ValidDocID(id string) error {
	if id == "" {
		return errors.New("document id is empty")
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
