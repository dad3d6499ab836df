package digest

import (
	"strings"
	"testing"
	"unicode/utf8"

	icdigest "github.com/icholy/digest"
)

func TestParseCredentials(t *testing.T) {
	h := `Digest username="alice",realm="example.test",cnonce="6b8b4567",nc=00000001,qop=auth,` +
		`uri="sip:127.0.0.1:5060",nonce="abc",response="137ae8",algorithm=MD5,opaque="4c6a"`
	c, err := ParseCredentials(h)
	if err != nil {
		t.Fatal(err)
	}
	want := Credentials{Username: "alice", Realm: "example.test", Cnonce: "6b8b4567", Nc: 1, QOP: "auth",
		URI: "sip:127.0.0.1:5060", Nonce: "abc", Response: "137ae8", Algorithm: "MD5", Opaque: "4c6a"}
	if *c != want {
		t.Fatalf("got %+v\nwant %+v", *c, want)
	}
	// Whitespace, tabs, case and escapes.
	c, err = ParseCredentials("  digest\tusername = \"a\\\"b\" ,\tREALM=\"r\", x-ext=tok, nc=FF")
	if err != nil || c.Username != `a"b` || c.Realm != "r" || c.Nc != 255 {
		t.Fatalf("got %+v, %v", c, err)
	}
	for _, bad := range []string{
		"", "Digest", "Digest ", "Basic abc", "Digestusername=\"a\"", `Digest username="a`, `Digest username`,
		`Digest username=`, `Digest username="a" realm="r"`, `Digest username="a", username="b"`,
		`Digest nc=123456789`, `Digest nc=xyz`, `Digest ,username="a"`, `Digest username="a",`,
	} {
		if c, err := ParseCredentials(bad); err == nil {
			t.Errorf("ParseCredentials(%q) = %+v, want an error", bad, c)
		}
	}
}

// FuzzParseCredentials is a differential test: wherever both our parser and
// github.com/icholy/digest accept a header, they must read the same values.
func FuzzParseCredentials(f *testing.F) {
	f.Add(`Digest username="alice",realm="example.test",cnonce="6b",nc=00000001,qop=auth,uri="sip:x",nonce="abc",response="13",algorithm=MD5,opaque="4c"`)
	f.Add(`Digest username="a\"b", realm="r\\", nc=ff`)
	f.Add(`Digest   username = "x" ,  realm = y`)
	f.Fuzz(func(t *testing.T, h string) {
		ours, err := ParseCredentials(h)
		// icholy's parser takes only spaces as whitespace and parameter
		// names in lower case (RFC 7616 makes them case-insensitive, as we
		// do); compare where the two grammars overlap.
		if err != nil || !utf8.ValidString(h) || strings.ContainsAny(h, "\t") || strings.ToLower(h[7:]) != h[7:] {
			return
		}
		theirs, err := icdigest.ParseCredentials(h)
		if err != nil {
			return
		}
		if ours.Username != theirs.Username || ours.Realm != theirs.Realm || ours.Nonce != theirs.Nonce ||
			ours.URI != theirs.URI || ours.Response != theirs.Response || ours.Algorithm != theirs.Algorithm ||
			ours.Cnonce != theirs.Cnonce || ours.Opaque != theirs.Opaque || ours.QOP != theirs.QOP {
			t.Fatalf("%q:\n ours   %+v\n theirs %+v", h, *ours, *theirs)
		}
		if theirs.Nc >= 0 && uint32(theirs.Nc) != ours.Nc && strings.Contains(strings.ToLower(h), "nc=") {
			t.Fatalf("%q: nc ours %d theirs %d", h, ours.Nc, theirs.Nc)
		}
	})
}

func BenchmarkParseCredentials(b *testing.B) {
	h := `Digest username="alice",realm="example.test",cnonce="6b8b4567",nc=00000001,qop=auth,uri="sip:127.0.0.1:5060",nonce="GOpXqOzq3rd510lVuY0OSP9rMTxLfPdJmbM79edS4Uw",response="137ae88c89497674fded28b8a6d082cb",algorithm=MD5,opaque="4c6a8bd0af338c095be8c8e9"`
	b.Run("ours", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = ParseCredentials(h)
		}
	})
	b.Run("icholy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = icdigest.ParseCredentials(h)
		}
	})
}
