package collab

import (
	"errors"
	"unicode"
	"unicode/utf8"
)

// MaxUserBytes is the longest user id or presence key: a native `user`, a token's `sub`, a
// Phoenix presence key. Every presence entry carries one to every member, so it is bounded
// like the document id.
const MaxUserBytes = 128

// ValidUserID checks an identity string that comes from outside (a native `user` query, a
// token's `sub`, a Phoenix presence key): 1-128 bytes of UTF-8 without control characters.
func ValidUserID(user string) error {
	switch {
	case user == "":
		return errors.New("user id is empty")
	case len(user) > MaxUserBytes:
		return errors.New("user id is longer than 128 bytes")
	case !utf8.ValidString(user):
		return errors.New("user id is not valid UTF-8")
	}
	for _, r := range user {
		if unicode.IsControl(r) {
			return errors.New("user id holds a control character")
		}
	}
	return nil
}
