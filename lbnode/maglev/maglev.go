// Package maglev builds Maglev consistent-hashing lookup tables (Eisenbud et
// al., NSDI 2016) with weights. Every load balancer node that builds a table
// from the same backend set, size and seed gets the same table byte for byte,
// which is what lets a flow reach the same backend through any node.
package maglev

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// DefaultSize is the table size used unless the operator picks another. It is
// prime, as Maglev's permutations require, and about 65 slots per backend at
// 1,000 backends keeps the imbalance between equal backends under 2%.
const DefaultSize = 65537

// Empty marks a slot no backend owns; it only appears when no backend has a
// positive weight.
const Empty = -1

// Backend is one entry in the table build. Key identifies the backend across
// nodes and rebuilds (the address in text form, for example); Weight is its
// relative share, and zero leaves it out of the table.
type Backend struct {
	Key    string
	Weight uint32
}

// Table is a built lookup table: Slots[i] is the index, in the backend slice
// given to Build, of the backend that owns slot i.
type Table struct {
	Slots []int
}

// Build fills a table of the given prime size from backends. The result does
// not depend on the order of backends, only on their keys, weights, the size
// and the seed.
func Build(backends []Backend, size uint32, seed uint64) (Table, error) {
	if !isPrime(size) {
		return Table{}, fmt.Errorf("maglev table size %d is not prime", size)
	}
	if size < 3 {
		return Table{}, errors.New("maglev table size must be at least 3")
	}
	seen := make(map[string]struct{}, len(backends))
	for _, b := range backends {
		if b.Key == "" {
			return Table{}, errors.New("maglev backend with empty key")
		}
		if _, dup := seen[b.Key]; dup {
			return Table{}, fmt.Errorf("maglev backend %q listed twice", b.Key)
		}
		seen[b.Key] = struct{}{}
	}

	// Placement order decides ties, so it must follow the keys rather than
	// the caller's slice order.
	order := make([]int, 0, len(backends))
	var maxWeight uint32
	for i, b := range backends {
		if b.Weight == 0 {
			continue
		}
		order = append(order, i)
		maxWeight = max(maxWeight, b.Weight)
	}
	slots := make([]int, size)
	for i := range slots {
		slots[i] = Empty
	}
	if len(order) == 0 {
		return Table{Slots: slots}, nil
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(backends[a].Key, backends[b].Key) })

	m := uint64(size)
	offset := make([]uint64, len(order))
	skip := make([]uint64, len(order))
	next := make([]uint64, len(order))
	credit := make([]uint64, len(order))
	for j, i := range order {
		h1, h2 := hashKey(backends[i].Key, seed)
		offset[j] = h1 % m
		skip[j] = h2%(m-1) + 1
	}

	// Weighted Maglev: on each pass a backend earns its weight in credit and
	// places one slot per maxWeight of credit, so over a full table its share
	// of slots converges to its share of the total weight.
	filled := uint64(0)
	for filled < m {
		for j, i := range order {
			credit[j] += uint64(backends[i].Weight)
			if credit[j] < uint64(maxWeight) {
				continue
			}
			credit[j] -= uint64(maxWeight)
			for {
				slot := (offset[j] + next[j]*skip[j]) % m
				next[j]++
				if slots[slot] == Empty {
					slots[slot] = i
					filled++
					break
				}
			}
			if filled == m {
				break
			}
		}
	}
	return Table{Slots: slots}, nil
}

// hashKey gives the two independent hashes Maglev needs for a backend's
// permutation (offset and skip). FNV-1a plus a splitmix finaliser is enough:
// keys are short and not adversarial, and the result must be stable across
// Go versions and machines, which rules out hash/maphash.
func hashKey(key string, seed uint64) (uint64, uint64) {
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], seed)
	h := uint64(14695981039346656037)
	for _, c := range buf {
		h ^= uint64(c)
		h *= 1099511628211
	}
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return mix64(h ^ 0x9e3779b97f4a7c15), mix64(h ^ 0xc2b2ae3d27d4eb4f)
}

func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func isPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d := uint32(3); uint64(d)*uint64(d) <= uint64(n); d += 2 {
		if n%d == 0 {
			return false
		}
	}
	return true
}
