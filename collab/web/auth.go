package web

import (
	"errors"
	"fmt"
	"math"
	"path"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"collabd/collab"
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
	now    func() time.Time
}

// clockSkew is the leeway for nbf and iat: a token issued by a server whose clock runs a
// little ahead is not refused. exp gets none: a token that is refused nowhere at the upgrade
// would be closed at once after it.
const clockSkew = 5 * time.Second

// maxExpiry is the latest expiry a deadline can hold (time.Duration and UnixNano end in
// April 2262); a later exp, such as the common "never" 9999999999, means no expiry.
var maxExpiry = time.Unix(0, math.MaxInt64)

func newAuthenticator(secret string) *authenticator {
	if secret == "" {
		return nil
	}
	return &authenticator{
		secret: []byte(secret),
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(clockSkew)),
		now:    time.Now,
	}
}

var (
	errNoSubject = errors.New("token has no subject (sub)")
	errExpired   = errors.New("token has invalid claims: token is expired")
)

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
	if id.user != "" {
		if err := collab.ValidUserID(id.user); err != nil {
			return identity{}, fmt.Errorf("invalid token: subject (sub): %w", err)
		}
	}
	if exp := c.ExpiresAt.Time; !exp.After(a.now()) {
		// The parser allows clockSkew past exp; the connection's deadline is exp itself.
		return identity{}, fmt.Errorf("invalid token: %w", errExpired)
	} else if exp.Before(maxExpiry) {
		id.expires = exp
	}
	return id, nil
}
