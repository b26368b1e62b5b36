package web

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the JWT claims collabd reads: the standard ones (sub is the user id, exp the
// expiry) plus which documents the token may join and whether it may write there.
type Claims struct {
	jwt.RegisteredClaims
	// Docs lists the documents the token may join, as patterns where * matches any run of
	// characters ("team-1:*"); absent means every document.
	Docs []string `json:"docs,omitempty"`
	// Write says whether the token may send cursors and broadcasts; absent means true.
	Write *bool `json:"write,omitempty"`
}

// identity is who a verified token speaks for.
type identity struct {
	user    string
	docs    []string
	write   bool
	expires time.Time // zero: no expiry
}

// allows reports whether the identity may join doc.
func (id identity) allows(doc string) bool {
	if id.docs == nil {
		return true
	}
	for _, p := range id.docs {
		// path.Match treats '/' specially, and document ids never hold one.
		if ok, err := path.Match(p, doc); err == nil && ok {
			return true
		}
	}
	return false
}

// authenticator verifies HS256 tokens; a nil one means auth is off.
type authenticator struct {
	secret []byte
	parser *jwt.Parser
}

func newAuthenticator(secret string) *authenticator {
	if secret == "" {
		return nil
	}
	return &authenticator{
		secret: []byte(secret),
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second)),
	}
}

var errNoSubject = errors.New("token has no subject (sub)")

// verifyUser is verify for native clients, whose user id is the token's subject.
func (a *authenticator) verifyUser(token string) (identity, error) {
	id, err := a.verify(token)
	if err == nil && id.user == "" {
		err = errNoSubject
	}
	return id, err
}

// verify checks token's signature and expiry and returns whom it speaks for; the subject
// may be empty (a Supabase anon key has none).
func (a *authenticator) verify(token string) (identity, error) {
	var c Claims
	_, err := a.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.secret, nil })
	if err != nil {
		return identity{}, fmt.Errorf("invalid token: %w", err)
	}
	id := identity{user: strings.TrimSpace(c.Subject), docs: c.Docs, write: c.Write == nil || *c.Write}
	if c.ExpiresAt != nil {
		id.expires = c.ExpiresAt.Time
	}
	return id, nil
}
