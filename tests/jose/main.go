// Command jose-verify checks regauth tokens the way Distribution registry 3 checks them
// with `auth.token.jwks` (registry/auth/token in distribution v3.1, as summarised in
// shared/real-peers.md), using go-jose, the JOSE library the registry is built on.
// Registry 3 uses go-jose v4; Debian ships v2, whose JWK parsing (coordinate lengths
// included) and JWS verification are the same for P-256 and RSA keys.
//
//	jose-verify JWKS_FILE ISSUER SERVICE TOKEN...
//
// The JWKS file is parsed whole (one bad key refuses the file, as the registry refuses to
// start). Each key is filed under its kid exactly as written. For each token: a token with
// x5c is refused (it would be checked against rootcertbundle, not the JWKS); the key is
// looked up by the header's kid; the signature must verify with it; iss must equal ISSUER
// and aud (a string or an array) must contain SERVICE. One line per token: "ok KID" or
// "refused: REASON". Exit status 1 if the file or any token was refused.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	jose "gopkg.in/square/go-jose.v2"
)

type claims struct {
	Issuer   string          `json:"iss"`
	Audience json.RawMessage `json:"aud"`
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: jose-verify JWKS_FILE ISSUER SERVICE TOKEN...")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var jwks jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &jwks); err != nil {
		fmt.Printf("refused: jwks: %v\n", err)
		os.Exit(1)
	}
	trusted := make(map[string]jose.JSONWebKey)
	for _, key := range jwks.Keys {
		trusted[key.KeyID] = key.Public()
	}
	failed := false
	for _, token := range os.Args[4:] {
		if err := verify(token, trusted, os.Args[2], os.Args[3]); err != nil {
			fmt.Printf("refused: %v\n", err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func verify(token string, trusted map[string]jose.JSONWebKey, issuer, service string) error {
	jws, err := jose.ParseSigned(token)
	if err != nil {
		return fmt.Errorf("malformed: %v", err)
	}
	// go-jose keeps a parsed x5c to itself: read the raw header for it.
	rawHeader, err := base64.RawURLEncoding.DecodeString(strings.SplitN(token, ".", 2)[0])
	if err != nil {
		return fmt.Errorf("malformed header: %v", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(rawHeader, &fields); err != nil {
		return fmt.Errorf("malformed header: %v", err)
	}
	if _, hasX5c := fields["x5c"]; hasX5c {
		return fmt.Errorf("x5c header: checked against rootcertbundle, never the jwks")
	}
	header := jws.Signatures[0].Header
	key, ok := trusted[header.KeyID]
	if !ok {
		return fmt.Errorf("token signed by untrusted key with ID: %q", header.KeyID)
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return fmt.Errorf("signature: %v", err)
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return fmt.Errorf("claims: %v", err)
	}
	if c.Issuer != issuer {
		return fmt.Errorf("untrusted issuer %q", c.Issuer)
	}
	var one string
	var many []string
	if json.Unmarshal(c.Audience, &one) == nil {
		many = []string{one}
	} else if json.Unmarshal(c.Audience, &many) != nil {
		return fmt.Errorf("bad aud %s", c.Audience)
	}
	for _, aud := range many {
		if aud == service {
			fmt.Printf("ok %s\n", header.KeyID)
			return nil
		}
	}
	return fmt.Errorf("token intended for another audience: %s", c.Audience)
}
