package cluster

import (
	"bytes"
	"strconv"

	"github.com/sigurn/crc16"
)

// Slots is the number of Redis Cluster hash slots.
const Slots = 16384

// Groups is the number of units of ownership: a node claims, renews
// and hands over groups of Slots/Groups consecutive slots, not single
// slots, so that a hand-over is one write per group and the map one read
// of Groups rows. Clients see slots; the groups only make their ranges.
const Groups = 256

// GroupSlots is the number of slots in a group.
const GroupSlots = Slots / Groups

// crcTable is CRC-16/XMODEM (polynomial 0x1021, initial 0), Redis
// Cluster's key hash. It is built once and only read.
var crcTable = crc16.MakeTable(crc16.CRC16_XMODEM)

// Slot returns the hash slot of a key as Redis Cluster computes it: the
// CRC16 of the key, or of the part between the first '{' and the next
// '}' when that part is not empty (a hash tag), modulo Slots.
func Slot(key []byte) int {
	if open := bytes.IndexByte(key, '{'); open >= 0 {
		if end := bytes.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	return int(crc16.Checksum(key, crcTable)) & (Slots - 1)
}

// UserSlot returns the slot of a user: the slot of its user_id written in
// decimal without leading zeros (its canonical spelling), whatever
// spelling a client sent: one user is served by one node.
func UserSlot(user int64) int {
	var b [20]byte
	return Slot(strconv.AppendInt(b[:0], user, 10))
}

// GroupOf returns the group of a slot.
func GroupOf(slot int) int { return slot / GroupSlots }

// UserGroup returns the group of a user.
func UserGroup(user int64) int { return GroupOf(UserSlot(user)) }
