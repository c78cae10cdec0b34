// Package fec adds forward error correction to umbra's UDP circuits, so the random
// losses of a drone radio (5–30 % of packets) cost fewer telemetry and video messages;
// datagrams are never retransmitted. It is a block code: an Encoder groups K messages
// into a block and sends M parity packets after them; a Decoder rebuilds the block's
// lost messages from any K of its K+M packets (Reed–Solomon over GF(2^8), systematic
// and MDS, by github.com/klauspost/reedsolomon).
//
// It owns the block and header format, the Encoder and the Decoder. It must not touch
// sockets, keys or clocks: callers pass bytes and the current time in, and take
// packets and messages out. In the agent it sits between fragmentation and sealing:
// each fragment the datagram.Splitter makes is one message, and each packet the
// Encoder returns is sealed on its own, so the header below travels inside the AEAD,
// authenticated and unseen by routers.
//
// # Latency
//
// Messages are never held back: each is sent as a data packet the moment it is added,
// and delivered the moment its data packet arrives, so a clean link sees no added
// delay and the messages in the order they came. Parity follows when a block has K
// messages or FlushDelay after its first (20 ms by default), whichever comes first,
// so a lost message is rebuilt at most about FlushDelay plus one trip later. A block
// the flush delay closes early is short: its missing messages count as empty, known
// to both ends and never sent, so its M parity packets protect however few it holds.
//
// For video, whose packets come in bursts (a frame's packets back to back, 33 ms
// apart at 30 fps), IdleFlush closes a block once its burst has ended, so a block is a
// frame (or K packets of a keyframe) and its parity follows the frame's last packet by
// IdleFlush; and Proportional sends a short block ⌈n·M/K⌉ parity packets (at least 2)
// instead of M, so small frames cost M/K, not M per frame. The Decoder needs neither:
// it rebuilds from any K shards, a short block's absent messages being known.
//
// # Packets
//
// Every packet starts with a 5-byte header; multi-byte fields are big-endian:
//
//	block ID   2 bytes   per flow direction, +1 per block, wraps at 65,536
//	index      1 byte    shard index: 0..K-1 data, K..K+M-1 parity
//	K          1 byte    data shards (messages) of the block's code, K ≥ 1
//	M          1 byte    parity shards of the block's code, M ≥ 1, K+M ≤ 64
//
// A data packet (index < K) carries its message after the header, nothing else: its
// length is the rest of the packet. A parity packet (index ≥ K) carries one more byte
// and its shard:
//
//	count      1 byte    messages the block holds, 1..K (fewer than K: flushed early)
//	shard      S bytes   parity; S is one more than the block's longest message
//
// The code works on equal-sized shards. Message i of a block becomes the shard
// message ‖ 0x80 ‖ zeros up to S bytes (ISO/IEC 7816-4 padding), and absent messages
// i ≥ count become S zeros. A rebuilt shard gives back its message: everything before
// its last non-zero byte, which must be 0x80. So the lengths of variable-sized
// messages travel inside the code, for one byte of padding per shard, and no packet
// carries a length field: a data packet's length is its message's, a parity packet's
// is S. A packet is therefore at most PacketOverhead (7) bytes longer than the longest
// message of its block, and a data packet exactly HeaderLen (5) bytes longer.
//
// The Decoder refuses, with an error and no change of state: packets shorter than
// their header; K or M of 0, or K+M above 64; an index past K+M; a parity count of 0
// or above K; a message over MaxMessage or a parity shard over MaxMessage+1 bytes; and
// any packet that disagrees with earlier ones of its block (K, M, count or S changed,
// a message at or past the count, a message too long for S). Nothing is allocated
// from a length the packet declares: there is none.
//
// # Choosing K and M
//
// A block survives any M losses among its K+M packets. With independent loss p,
// message i is lost only if its own packet is and at least M of the other K+M−1 are
// too, so the delivered share is 1 − p·P(Binomial(K+M−1, p) ≥ M):
//
//	K   M   overhead   5 % loss   10 % loss   20 % loss   30 % loss
//	8   2     25 %      99.64 %    97.75 %     88.72 %     75.88 %
//	8   4     50 %      99.99 %    99.81 %     96.78 %     87.09 %
//	8   6     75 %     >99.99 %    99.99 %     99.40 %     95.04 %
//	8   8    100 %     >99.99 %   >99.99 %     99.92 %     98.50 %
//	16  8     50 %     >99.99 %    99.99 %     98.57 %     88.54 %
//	16  12    75 %     >99.99 %   >99.99 %     99.93 %     97.61 %
//	16  16   100 %     >99.99 %   >99.99 %    >99.99 %     99.71 %
//
// (Without FEC a message survives with probability 1 − p.) The tests measure these
// on 20,000 messages. Guidance:
//
//   - Telemetry on a fair link (≤ 5 % loss): the defaults, K=8, M=2: 25 % more
//     packets, 99.6 % of messages.
//   - 10 % loss: K=8, M=4 (50 %): 99.8 %. K=16, M=8 costs the same and reaches
//     99.99 %, but a block takes twice as many messages to fill, so at telemetry
//     rates more blocks close by the flush delay, short, where M parity packets cost
//     more than M/K.
//   - 30 % loss: K=8, M=8 (100 %): 98.5 %; video, whose packets come fast enough to
//     fill wide blocks within the flush delay, K=16, M=12 (75 %): 97.6 %, or M=16
//     for 99.7 %. No code keeps up with 30 % loss on less than 43 % overhead
//     (p/(1−p)): K messages need K/(1−p) packets sent for K to arrive.
//
// The figures assume independent losses. Radio losses come in bursts too
// (Gilbert–Elliott): a block rides out a burst of up to M of its packets; a longer
// one, or a blackout, loses the block whatever the average, and only wider blocks
// (more packets in flight per block) help with those. Overhead() gives M/K; blocks
// flushed early cost more, M parity packets for fewer than K messages.
//
// # Memory
//
// The Encoder holds K+2M+1 buffers of about MaxMessage bytes (26 KB for the defaults). The Decoder tracks the newest
// Blocks block IDs and keeps copies of the shards of blocks still open, in at most
// Blocks×(K+M) buffers (at least 64) of MaxMessage+1 bytes, 437 KiB for the defaults
// (BufferBound), made as needed and reused: K and M of its own Config, whatever the
// packets claim. When they run out it closes the oldest open block. Besides those it
// holds a fixed block table and up to four codecs (tens of KB each at most; a codec's
// cache of inverted matrices is kept only where every loss pattern fits 64 KB).
package fec
