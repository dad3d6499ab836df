package sipmethod

import "testing"

func TestKnown(t *testing.T) {
	for _, m := range []string{"INVITE", "REGISTER", "UPDATE", "MESSAGE"} {
		if !Known(m) {
			t.Errorf("Known(%q) = false", m)
		}
	}
	for _, m := range []string{"", "invite", "FROBNICATE", "REGISTER "} {
		if Known(m) {
			t.Errorf("Known(%q) = true", m)
		}
	}
}
