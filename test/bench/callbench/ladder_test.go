package main

import (
	"errors"
	"slices"
	"testing"
)

// server is a fake: rates up to capacity are clean, except the attempts
// listed in flaky (by their index among all attempts), which fail once.
type server struct {
	capacity int
	flaky    map[int]bool
	offered  []int
}

func (s *server) attempt(rate int) (bool, error) {
	n := len(s.offered)
	s.offered = append(s.offered, rate)
	return rate <= s.capacity && !s.flaky[n], nil
}

func TestLadder(t *testing.T) {
	rates := []int{1000, 2000, 2500, 3000, 3500}
	for _, tc := range []struct {
		name          string
		refine, retry int
		capacity      int
		flaky         map[int]bool
		best          int
		offered       []int
		agains        int
	}{
		{name: "capacity found by bisection", refine: 2, retry: 0, capacity: 2700,
			best: 2600, offered: []int{1000, 2000, 2500, 3000, 2750, 2600}},
		{name: "no retry: one stall stops the ladder", refine: 2, retry: 0, capacity: 2700, flaky: map[int]bool{1: true},
			best: 1750, offered: []int{1000, 2000, 1500, 1750}},
		{name: "a retry rides out one stall", refine: 2, retry: 1, capacity: 2700, flaky: map[int]bool{1: true},
			best: 2600, offered: []int{1000, 2000, 2000, 2500, 3000, 3000, 2750, 2750, 2600}, agains: 3},
		{name: "a rate beyond capacity is offered retry+1 times", refine: 0, retry: 2, capacity: 2000,
			best: 2000, offered: []int{1000, 2000, 2500, 2500, 2500}, agains: 2},
		{name: "clean at every rate", refine: 2, retry: 1, capacity: 10000,
			best: 3500, offered: rates},
		{name: "below the first rate: bisected down from it", refine: 2, retry: 1, capacity: 500,
			best: 500, offered: []int{1000, 1000, 500, 750, 750}, agains: 2},
		{name: "nothing clean", refine: 2, retry: 0, capacity: 0,
			best: 0, offered: []int{1000, 500, 250}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &server{capacity: tc.capacity, flaky: tc.flaky}
			agains := 0
			best, err := ladder(rates, tc.refine, tc.retry, s.attempt, func(rate, i int) {
				agains++
				if i < 1 || i > tc.retry || rate != s.offered[len(s.offered)-1] {
					t.Errorf("again(%d, %d) after offering %v", rate, i, s.offered)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if best != tc.best || !slices.Equal(s.offered, tc.offered) || agains != tc.agains {
				t.Errorf("best %d after offering %v (%d retries), want %d after %v (%d)", best, s.offered, agains, tc.best, tc.offered, tc.agains)
			}
		})
	}
}

func TestLadderStopsOnError(t *testing.T) {
	boom := errors.New("server exited")
	n := 0
	best, err := ladder([]int{100, 200, 300}, 2, 1, func(rate int) (bool, error) {
		n++
		if rate == 200 {
			return false, boom
		}
		return true, nil
	}, func(int, int) { t.Error("retried after an error") })
	if !errors.Is(err, boom) || best != 100 || n != 2 {
		t.Errorf("best %d, err %v after %d attempts", best, err, n)
	}
}
