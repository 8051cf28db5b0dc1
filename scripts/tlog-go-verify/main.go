// Command go-verify checks a tidelog transparency-log export with Go's
// golang.org/x/mod/sumdb/note and sumdb/tlog (code the tidelog team did not
// write). Usage: go-verify DIR. Exits 1 on the first failed check.
//
// DIR holds: log.vkey, witness.vkey (tlog-cosignature v1, type 0x04),
// checkpoint (log-signed and cosigned), old-checkpoint, add-checkpoint
// (tlog-witness request body from old-checkpoint to checkpoint),
// entry + entry.tlog-proof (c2sp.org/tlog-proof@v1), and the C2SP tiles
// tile/<L>/<N>[.p/<W>] and tile/entries/<N>[.p/<W>] of checkpoint.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var dir string

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func read(name string) []byte {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		fail("%v", err)
	}
	return b
}

// cosigV1 verifies c2sp.org/tlog-cosignature v1 signatures (not in x/mod 0.7).
type cosigV1 struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosigV1) Name() string    { return v.name }
func (v *cosigV1) KeyHash() uint32 { return v.hash }
func (v *cosigV1) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	m := fmt.Sprintf("cosignature/v1\ntime %d\n%s", t, msg)
	return t < 1<<63 && ed25519.Verify(v.key, []byte(m), sig[8:])
}

func newCosigV1(vkey string) *cosigV1 {
	parts := strings.SplitN(strings.TrimSpace(vkey), "+", 3)
	if len(parts) != 3 {
		fail("witness vkey: malformed")
	}
	key, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(key) != 33 || key[0] != 0x04 {
		fail("witness vkey: not an Ed25519 cosignature/v1 key")
	}
	h := sha256.Sum256(append([]byte(parts[0]+"\n"), key...))
	id := binary.BigEndian.Uint32(h[:4])
	if fmt.Sprintf("%08x", id) != parts[1] {
		fail("witness vkey: key id mismatch")
	}
	return &cosigV1{parts[0], id, ed25519.PublicKey(key[1:])}
}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

func parseCheckpoint(text string) checkpoint {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 || lines[0] == "" {
		fail("checkpoint body malformed")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		fail("checkpoint size malformed")
	}
	h, err := tlog.ParseHash(lines[2])
	if err != nil {
		fail("checkpoint root malformed")
	}
	return checkpoint{lines[0], n, h}
}

func open(msg []byte, vs ...note.Verifier) (*note.Note, checkpoint) {
	n, err := note.Open(msg, note.VerifierList(vs...))
	if err != nil {
		fail("note.Open: %v", err)
	}
	return n, parseCheckpoint(n.Text)
}

// parseHashes reads base64 hash lines up to an empty line; returns the rest.
func parseHashes(s string) ([]tlog.Hash, string) {
	var hs []tlog.Hash
	for {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			fail("missing empty line")
		}
		line := s[:i]
		s = s[i+1:]
		if line == "" {
			return hs, s
		}
		h, err := tlog.ParseHash(line)
		if err != nil {
			fail("bad proof hash %q", line)
		}
		hs = append(hs, h)
	}
}

// tiles reads C2SP tiles: tile/<L>/<N>[.p/<W>] (Go's path minus the height).
type tiles struct{}

func (tiles) Height() int { return 8 }
func (tiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	var out [][]byte
	for _, t := range ts {
		out = append(out, read(strings.Replace(t.Path(), "tile/8/", "tile/", 1)))
	}
	return out, nil
}
func (tiles) SaveTiles([]tlog.Tile, [][]byte) {}

func main() {
	if len(os.Args) != 2 {
		fail("usage: go-verify DIR")
	}
	dir = os.Args[1]
	logV, err := note.NewVerifier(strings.TrimSpace(string(read("log.vkey"))))
	if err != nil {
		fail("log vkey: %v", err)
	}
	witV := newCosigV1(string(read("witness.vkey")))

	// 1. Checkpoint: log signature and witness cosignature both verify.
	n, cp := open(read("checkpoint"), logV, witV)
	if len(n.Sigs) != 2 {
		fail("checkpoint: want log + witness signatures, got %d verified", len(n.Sigs))
	}
	fmt.Printf("OK checkpoint %s size %d root %s, signed by %s and %s\n", cp.origin, cp.size, cp.root, n.Sigs[0].Name, n.Sigs[1].Name)

	// 2. add-checkpoint body: consistency old-checkpoint -> checkpoint.
	_, old := open(read("old-checkpoint"), logV)
	body := string(read("add-checkpoint"))
	i := strings.IndexByte(body, '\n')
	if i < 0 || !strings.HasPrefix(body, "old ") || body[4:i] != strconv.FormatInt(old.size, 10) {
		fail("add-checkpoint: old line does not match old-checkpoint")
	}
	proof, rest := parseHashes(body[i+1:])
	if len(proof) > 63 {
		fail("add-checkpoint: more than 63 proof lines")
	}
	n2, next := open([]byte(rest), logV)
	if n2.Text != n.Text {
		fail("add-checkpoint: checkpoint differs")
	}
	if err := tlog.CheckTree(tlog.TreeProof(proof), next.size, next.root, old.size, old.root); err != nil {
		fail("consistency %d -> %d: %v", old.size, next.size, err)
	}
	fmt.Printf("OK consistency proof %d -> %d (%d hashes)\n", old.size, next.size, len(proof))

	// 3. tlog-proof: inclusion of the entry.
	pf := string(read("entry.tlog-proof"))
	lines := strings.SplitN(pf, "\n", 3)
	if len(lines) < 3 || lines[0] != "c2sp.org/tlog-proof@v1" {
		fail("tlog-proof: bad header")
	}
	if strings.HasPrefix(lines[1], "extra ") {
		lines = strings.SplitN(lines[2], "\n", 2)
	} else {
		lines = lines[1:]
	}
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "index ") {
		fail("tlog-proof: missing index")
	}
	index, err := strconv.ParseInt(lines[0][6:], 10, 64)
	if err != nil || strconv.FormatInt(index, 10) != lines[0][6:] {
		fail("tlog-proof: bad index")
	}
	rproof, rest := parseHashes(lines[1])
	n3, pcp := open([]byte(rest), logV, witV)
	if len(n3.Sigs) != 2 || pcp.origin != cp.origin {
		fail("tlog-proof: checkpoint not signed by log and witness")
	}
	leaf := tlog.RecordHash(read("entry"))
	if err := tlog.CheckRecord(tlog.RecordProof(rproof), pcp.size, pcp.root, index, leaf); err != nil {
		fail("inclusion of entry %d in %d: %v", index, pcp.size, err)
	}
	fmt.Printf("OK tlog-proof: entry %d included in tree of size %d\n", index, pcp.size)

	// 4. Tiles: authenticated against the root by tlog.TileHashReader.
	thr := tlog.TileHashReader(tlog.Tree{N: cp.size, Hash: cp.root}, tiles{})
	th, err := tlog.TreeHash(cp.size, thr)
	if err != nil || th != cp.root {
		fail("tiles: tree hash %v, %v", th, err)
	}
	p2, err := tlog.ProveRecord(cp.size, index, thr)
	if err != nil || tlog.CheckRecord(p2, cp.size, cp.root, index, leaf) != nil {
		fail("tiles: proof of entry %d: %v", index, err)
	}

	// 5. Entry bundles: re-hash every entry, rebuild the tree, compare roots.
	var stored []tlog.Hash
	hr := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		for j, x := range ix {
			out[j] = stored[x]
		}
		return out, nil
	})
	for k := int64(0); k*256 < cp.size; k++ {
		w := cp.size - k*256
		if w > 256 {
			w = 256
		}
		t := tlog.Tile{H: 8, L: -1, N: k, W: int(w)}
		bundle := read(strings.Replace(t.Path(), "tile/8/data/", "tile/entries/", 1))
		level0 := read(strings.Replace(tlog.Tile{H: 8, L: 0, N: k, W: int(w)}.Path(), "tile/8/", "tile/", 1))
		for e := int64(0); e < w; e++ {
			if len(bundle) < 2 || len(bundle) < 2+int(binary.BigEndian.Uint16(bundle)) {
				fail("entry bundle %d truncated", k)
			}
			l := 2 + int(binary.BigEndian.Uint16(bundle))
			h := tlog.RecordHash(bundle[2:l])
			bundle = bundle[l:]
			if !bytes.Equal(h[:], level0[e*32:e*32+32]) {
				fail("entry %d does not match its level-0 tile hash", k*256+e)
			}
			hs, err := tlog.StoredHashesForRecordHash(k*256+e, h, hr)
			if err != nil {
				fail("%v", err)
			}
			stored = append(stored, hs...)
		}
		if len(bundle) != 0 {
			fail("entry bundle %d has trailing bytes", k)
		}
	}
	if th, err := tlog.TreeHash(cp.size, hr); err != nil || th != cp.root {
		fail("root recomputed from entry bundles differs: %v %v", th, err)
	}
	fmt.Printf("OK tiles and %d entries re-hashed to the checkpoint root\n", cp.size)
}
