// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * lispnet kernel fast path: LISP data plane (RFC 9300) as two tc clsact programs.
 *
 *   lisp_encap  ingress of EID-facing interfaces (ITR role)
 *   lisp_decap  ingress of RLOC-facing interfaces (ETR role)
 *
 * The Python side (lispnet/dataplane/ebpf.py) owns every map; the programs only read
 * them, except for the per-CPU counters and the miss bookkeeping.
 *
 * Encapsulation: longest-prefix match of (instance-id, inner destination) in an LPM
 * trie per family.  A positive entry holds up to LISP_MAX_RLOCS locators; the RLOC is
 * chosen like the user-space path (dataplane/encap.py choose_locator): usable = up and
 * priority != 255, keep the best priority, map the flow hash onto the cumulative
 * weights (all weights 0 = equal share).  The outer header is pushed with
 * bpf_skb_adjust_room(BPF_ADJ_ROOM_MAC, ENCAP_L3 | ENCAP_L4_UDP | ENCAP_L2(8)) so that
 * GSO packets are segmented as UDP tunnel packets (the 8-byte LISP header plays the
 * role of the inner "L2" header), then the outer destination is routed with
 * bpf_fib_lookup (tot_len = 0: a GSO packet is larger than the MTU until segmented)
 * and the packet is redirected: handing it back to the stack would drop it as a
 * martian since its source is one of our own RLOCs.
 *
 * Decapsulation: UDP 4341 to one of our RLOCs; the instance-id selects the routing
 * table (a VRF's table or main), the 36/56 outer bytes are removed, the inner packet
 * is routed with bpf_fib_lookup and redirected (local destinations go to the stack).
 * A GSO batch of LISP datagrams is first segmented by a veth pair (see gso_split).
 *
 * Misses: the packet is dropped (or passed to the stack when configured, e.g. toward
 * the TUN device of the user-space path) and a rate-limited ring buffer event tells
 * the daemon to send a Map-Request.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define LISP_DATA_PORT 4341
#define LISP_MAX_RLOCS 8
#define LISP_HDR_LEN 8
#define OVERHEAD4 (20 + 8 + LISP_HDR_LEN)
#define OVERHEAD6 (40 + 8 + LISP_HDR_LEN)
#define MISS_COPY 1536	/* a whole MTU-sized packet: the daemon can send it once resolved */
#define MISS_INTERVAL_NS (100ULL * 1000 * 1000)

#define LISP_N_BIT 0x80000000U
#define LISP_L_BIT 0x40000000U
#define LISP_I_BIT 0x08000000U

/* Flag values as in the kernel UAPI; own names so older or newer headers never clash. */
#define ADJ_FIXED_GSO (1ULL << 0)
#define ADJ_ENCAP_L3_IPV4 (1ULL << 1)
#define ADJ_ENCAP_L3_IPV6 (1ULL << 2)
#define ADJ_ENCAP_L4_UDP (1ULL << 4)
#define ADJ_DECAP_L3_IPV4 (1ULL << 7)
#define ADJ_DECAP_L3_IPV6 (1ULL << 8)
#define ADJ_ENCAP_L2(len) (((__u64)(len) & 0xff) << 56)
#define FIB_DIRECT (1U << 0)
#define FIB_TBID (1U << 3)
#define RT_TABLE_MAIN_ID 254

#define AF_INET_ 2
#define AF_INET6_ 10

/* Entry actions (fwd_entry.action), written by ebpf.py. */
enum {
	ACT_ENCAP = 0,		/* positive entry or PETR: encapsulate to a locator */
	ACT_NATIVE = 1,		/* natively forward: leave it to the kernel stack */
	ACT_MAP_REQUEST = 2,	/* treat as a miss: punt to the daemon */
	ACT_DROP = 3,		/* drop (negative entry, policy, auth failure) */
};

/* Configuration flags (lisp_config.flags). */
#define CFG_MISS_PASS 1U	/* pass misses to the stack instead of dropping them */
#define CFG_LSB_VALID 2U	/* set the L bit with lisp_config.lsb */

/* Per-CPU counters; the order is mirrored by COUNTERS in ebpf.py. */
enum {
	C_ENCAPSULATED,
	C_DECAPSULATED,
	C_MISSES,
	C_MISS_EVENTS,
	C_NATIVE,
	C_TTL_EXPIRED,
	C_LOCAL,
	C_ENCAP_BYTES,
	C_DECAP_BYTES,
	C_DROP_NEGATIVE,
	C_DROP_NO_RLOC,
	C_DROP_NO_SOURCE,
	C_DROP_FIB,
	C_DROP_ADJUST,
	C_DROP_UNKNOWN_IID,
	C_DROP_BAD_INNER,
	C_DROP_MISS,
	C_GSO_BATCHES,
	C_DROP_GSO,
	C_TOO_BIG,		/* bigger than the egress MTU once encapsulated: punted */
	C_DROP_TOO_BIG,		/* ... and the ring buffer was full */
	C_DROP_ECN,		/* outer CE on an inner packet that is not ECN-capable (RFC 6040) */
	C_NCOUNTERS,
};

struct lpm_key4 {
	__u32 prefixlen;	/* 32 (iid) + inner prefix length */
	__u8 iid[4];		/* instance-id, network order */
	__u8 addr[4];
};

struct lpm_key6 {
	__u32 prefixlen;
	__u8 iid[4];
	__u8 addr[16];
};

struct rloc {
	__u8 family;		/* 4 or 6 */
	__u8 priority;
	__u8 weight;
	__u8 up;
	__u8 addr[16];		/* IPv4 in the first 4 bytes */
};

struct fwd_entry {
	__u8 action;
	__u8 n_rlocs;
	__u16 flags;
	__u32 reserved;
	struct rloc rlocs[LISP_MAX_RLOCS];
};

struct lisp_config {
	__u32 lsb;
	__u32 flags;
	__u32 underlay_table;	/* 0 = main */
	__u8 has_src4;
	__u8 has_src6;
	__u8 pad[2];
	__u8 src4[4];
	__u8 src6[16];
	__u32 seg_ifindex;	/* egress of the segmenting veth (0 = none, see lisp_decap) */
	__u32 seg_peer;		/* its peer, where the segments come back in */
	__u8 seg_mac[6];	/* the peer's MAC: segments arrive as PACKET_HOST */
	__u8 pad2[2];
};

struct if_conf {		/* EID-facing interface -> its instance */
	__u32 iid;
	__u32 table;		/* the instance's table (0 = main), for local-EID checks */
};

struct iid_conf {		/* instance-id -> where decapsulated packets go */
	__u32 ifindex;
	__u32 table;		/* 0 = main */
};

struct rloc_key {
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

struct rloc_stat_key {		/* per-RLOC traffic, read by `lispnet show stats` */
	__u8 family;
	__u8 dir;		/* 0: encapsulated to, 1: decapsulated from */
	__u8 pad[2];
	__u8 addr[16];
};

struct rloc_stat {
	__u64 packets;
	__u64 bytes;
};

struct miss_key {
	__u32 iid;
	__u8 family;
	__u8 pad[3];
	__u8 dst[16];
};

enum {
	EV_MISS = 0,		/* no map-cache entry: the daemon sends a Map-Request */
	EV_TOO_BIG = 1,		/* too big for the egress once encapsulated (RFC 9300 7.1):
				 * the daemon encapsulates it through a socket (the kernel
				 * fragments the outer packet) or answers ICMP Too Big */
};

struct miss_event {
	__u32 iid;
	__u8 family;
	__u8 kind;		/* EV_* */
	__u16 len;		/* bytes of the inner packet copied into pkt */
	__u16 mtu;		/* EV_TOO_BIG: the egress MTU */
	__u16 gso;		/* EV_TOO_BIG: 1 when the packet was a GSO super-packet */
	__u8 src[16];
	__u8 dst[16];
	__u8 pkt[MISS_COPY];
};

struct lisp4 {
	struct iphdr ip;
	struct udphdr udp;
	__be32 w1;
	__be32 w2;
};

struct lisp6 {
	struct ipv6hdr ip;
	struct udphdr udp;
	__be32 w1;
	__be32 w2;
};

/* Naturally aligned, no padding: the outer headers as they go on the wire. */
_Static_assert(sizeof(struct lisp4) == OVERHEAD4, "lisp4 layout");
_Static_assert(sizeof(struct lisp6) == OVERHEAD6, "lisp6 layout");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__type(key, struct lpm_key4);
	__type(value, struct fwd_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} fwd_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__type(key, struct lpm_key6);
	__type(value, struct fwd_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} fwd_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lisp_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct if_conf);
} eid_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct iid_conf);
} instances SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct rloc_key);
	__type(value, __u8);
} local_rlocs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_NCOUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct rloc_stat_key);
	__type(value, struct rloc_stat);
} rloc_stats SEC(".maps");

/* Per CPU and direction, the RLOC of the last packets and their counts not yet added
 * to rloc_stats: a steady flow costs one array lookup per packet instead of a hash
 * lookup.  Readers (ebpf.py) add both maps. */
struct rloc_recent {
	struct rloc_stat_key key;
	__u32 pad;
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct rloc_recent);
} rloc_recent SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct miss_key);
	__type(value, __u64);
} miss_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} miss_events SEC(".maps");

static __always_inline void count_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += n;
}

static __always_inline void rloc_flush(const struct rloc_stat_key *k, __u64 packets, __u64 bytes)
{
	struct rloc_stat *v = bpf_map_lookup_elem(&rloc_stats, k);

	if (!v) {
		struct rloc_stat zero = {};

		bpf_map_update_elem(&rloc_stats, k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&rloc_stats, k);
		if (!v)
			return;
	}
	v->packets += packets;
	v->bytes += bytes;
}

static __always_inline void rloc_count(__u8 family, __u8 dir, const void *addr, __u32 pkts, __u64 bytes)
{
	struct rloc_stat_key k = {};
	struct rloc_recent *c;
	__u32 idx = dir;

	k.family = family;
	k.dir = dir;
	if (family == 4)
		__builtin_memcpy(k.addr, addr, 4);
	else
		__builtin_memcpy(k.addr, addr, 16);
	c = bpf_map_lookup_elem(&rloc_recent, &idx);
	if (!c) {
		rloc_flush(&k, pkts, bytes);
		return;
	}
	const __u32 *a = (const __u32 *)&k, *b = (const __u32 *)&c->key;

	if (c->packets && a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4]) {
		c->packets += pkts;
		c->bytes += bytes;
		return;
	}
	if (c->packets)
		rloc_flush(&c->key, c->packets, c->bytes);
	c->key = k;
	c->packets = pkts;
	c->bytes = bytes;
}

static __always_inline int drop(__u32 reason)
{
	count_add(reason, 1);
	return TC_ACT_SHOT;
}

static __always_inline __u16 csum_fold(__s64 csum)
{
	__u32 sum = (__u32)csum;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* IP + TCP/UDP header bytes of the IP packet at ``off`` (for a GSO packet's segment size). */
static __always_inline __u32 headers_at(struct __sk_buff *skb, __u32 off, __u8 family)
{
	__u8 b[2];
	__u32 l3, proto;

	if (family == 4) {
		if (bpf_skb_load_bytes(skb, off, b, 1) || bpf_skb_load_bytes(skb, off + 9, b + 1, 1))
			return 0;
		l3 = (b[0] & 0xf) * 4;
		proto = b[1];
	} else {
		if (bpf_skb_load_bytes(skb, off + 6, b, 1))
			return 0;
		l3 = 40;
		proto = b[0];
	}
	if (proto == IPPROTO_UDP)
		return l3 + 8;
	if (proto != IPPROTO_TCP || bpf_skb_load_bytes(skb, off + (l3 & 0x3c) + 12, b, 1))
		return l3;
	return l3 + (b[0] >> 4) * 4;
}

static __always_inline __u32 inner_headers(struct __sk_buff *skb, __u8 family)
{
	return headers_at(skb, ETH_HLEN, family);
}

/* The packets a GSO skb whose IP packet starts at ``off`` becomes on the wire (1 if not GSO). */
static __always_inline __u32 gso_segments(struct __sk_buff *skb, __u32 off, __u8 family)
{
	__u32 size = skb->gso_size, hl, payload;

	if (!size)
		return 1;
	if (skb->gso_segs)
		return skb->gso_segs;
	hl = headers_at(skb, off, family);
	if (skb->len <= off + hl)
		return 1;
	payload = skb->len - off - hl;
	return (payload + size - 1) / size;
}

static __always_inline __u32 room_for(__u8 ofam)
{
	return ofam == 4 ? OVERHEAD4 : OVERHEAD6;
}

/* RFC 1071 checksum of an option-less IPv4 header (check field zero), computed inline:
 * ten 16-bit words, cheaper than a bpf_csum_diff call per packet. */
static __always_inline __u16 ip4_checksum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
	int i;

#pragma unroll
	for (i = 0; i < 10; i++)
		sum += w[i];
	return csum_fold(sum);
}

static __always_inline __u32 table_or_main(__u32 table)
{
	return table ? table : RT_TABLE_MAIN_ID;
}

static __always_inline void fib_set_table(struct bpf_fib_lookup *p, __u32 table)
{
	/* 'tbid' shares its 4 bytes with h_vlan_proto/h_vlan_TCI (kernel >= 6.8). */
	__builtin_memcpy(&p->h_vlan_proto, &table, sizeof(table));
}

/* Send a routed packet: fill the MACs from the FIB result, or let the neighbour
 * subsystem resolve the next hop when the FIB had no neighbour entry yet. */
static __always_inline int forward(struct __sk_buff *skb, struct bpf_fib_lookup *p, int rc)
{
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		/* direct packet writes: cheaper than bpf_skb_store_bytes per packet */
		void *data = (void *)(long)skb->data;
		void *data_end = (void *)(long)skb->data_end;
		struct ethhdr *eth = data;

		if ((void *)(eth + 1) > data_end)
			return drop(C_DROP_FIB);
		__builtin_memcpy(eth->h_dest, p->dmac, 6);
		__builtin_memcpy(eth->h_source, p->smac, 6);
		return bpf_redirect(p->ifindex, 0);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = {};

		nh.nh_family = p->family;
		__builtin_memcpy(&nh.ipv6_nh, &p->ipv6_dst, 16);
		return bpf_redirect_neigh(p->ifindex, &nh, sizeof(nh), 0);
	}
	return drop(C_DROP_FIB);
}

#define CACHE_TICKS 1	/* cached lookups live while jiffies moved by at most this */

/* Nonces: a per-CPU xorshift32 generator reseeded from the kernel's PRNG every 256
 * packets (unpredictable enough for a data-plane nonce, a fraction of the helper's cost). */
struct nonce_state {
	__u32 x;
	__u32 left;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nonce_state);
} nonce_state SEC(".maps");

static __always_inline __u32 nonce24(void)
{
	__u32 zero = 0;
	struct nonce_state *st = bpf_map_lookup_elem(&nonce_state, &zero);
	__u32 x;

	if (!st)
		return bpf_get_prandom_u32();
	if (!st->left || !st->x) {
		st->x = bpf_get_prandom_u32() | 1;
		st->left = 256;
	}
	x = st->x;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	st->x = x;
	st->left--;
	return x;
}

/* Per CPU, the last interface (slot 0: ifindex -> if_conf) and instance (slot 1:
 * instance-id -> iid_conf) looked up, reused like the route cache (CACHE_TICKS): a
 * steady flow skips two hash lookups per packet; configuration changes made by the
 * daemon are seen within a tick. */
struct conf_cache {
	__u64 stamp;
	__u32 key;
	__u32 valid;
	__u32 a;	/* if_conf.iid or iid_conf.ifindex */
	__u32 b;	/* the table */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct conf_cache);
} conf_cache SEC(".maps");

/* Look ``key`` up in ``map`` (a hash of two u32 values) through cache slot ``slot``;
 * fills *a, *b and returns 1 when found. */
static __always_inline int cached_conf(void *map, __u32 slot, __u32 key, __u32 *a, __u32 *b)
{
	struct conf_cache *c = bpf_map_lookup_elem(&conf_cache, &slot);
	__u64 now = bpf_jiffies64();
	__u32 *v;

	if (c && c->valid && c->key == key && now - c->stamp <= CACHE_TICKS) {
		*a = c->a;
		*b = c->b;
		return 1;
	}
	v = bpf_map_lookup_elem(map, &key);
	if (!v) {
		if (c)
			c->valid = 0;
		return 0;
	}
	*a = v[0];
	*b = v[1];
	if (c) {
		c->stamp = now;
		c->key = key;
		c->a = *a;
		c->b = *b;
		c->valid = 1;
	}
	return 1;
}

/* Per CPU, the last successful route lookup of each kind (0: outer RLOC at encapsulation,
 * 1: inner destination at decapsulation), reused while the jiffies counter moved by at
 * most one tick (2 ms at HZ=1000, 8 ms at HZ=250; jiffies cost nothing to read, unlike
 * the clock): a flow costs one FIB and neighbour lookup per CPU and tick instead of one
 * per packet.  Route and neighbour changes are seen within that time. */

struct route_cache {
	__u64 stamp;
	__u32 table;
	__u32 ifindex;
	__u32 mtu;
	__u8 family;
	__u8 tos;
	__u8 valid;
	__u8 pad;
	__u32 dst[4];
	__u8 dmac[6];
	__u8 smac[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct route_cache);
} route_cache SEC(".maps");

/* bpf_fib_lookup (direct, in ``table``) through the cache; ``dst`` is 4 or 16 bytes,
 * 4-byte aligned.  On a hit p's ifindex, MACs and mtu_result are filled as by a
 * successful lookup. */
static __always_inline int cached_fib_lookup(struct __sk_buff *skb, struct bpf_fib_lookup *p, __u32 slot,
					     __u8 family, const __u32 *dst, __u32 table, __u8 tos)
{
	struct route_cache *c = bpf_map_lookup_elem(&route_cache, &slot);
	__u64 now = bpf_jiffies64();
	int rc;

	if (c && c->valid && c->family == family && c->table == table && c->tos == tos &&
	    now - c->stamp <= CACHE_TICKS && c->dst[0] == dst[0] &&
	    (family == 4 || (c->dst[1] == dst[1] && c->dst[2] == dst[2] && c->dst[3] == dst[3]))) {
		p->ifindex = c->ifindex;
		__builtin_memcpy(p->dmac, c->dmac, 6);
		__builtin_memcpy(p->smac, c->smac, 6);
		p->mtu_result = c->mtu;
		return BPF_FIB_LKUP_RET_SUCCESS;
	}
	rc = bpf_fib_lookup(skb, p, sizeof(*p), FIB_DIRECT | FIB_TBID);
	if (!c)
		return rc;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS && p->mtu_result) {
		c->stamp = now;
		c->table = table;
		c->ifindex = p->ifindex;
		c->mtu = p->mtu_result;
		c->family = family;
		c->tos = tos;
		c->dst[0] = dst[0];
		if (family == 6) {
			c->dst[1] = dst[1];
			c->dst[2] = dst[2];
			c->dst[3] = dst[3];
		}
		__builtin_memcpy(c->dmac, p->dmac, 6);
		__builtin_memcpy(c->smac, p->smac, 6);
		c->valid = 1;
	} else {
		c->valid = 0;
	}
	return rc;
}

/* Copy the inner packet (up to MISS_COPY bytes) into a ring-buffer event for the daemon. */
static __always_inline int punt(struct __sk_buff *skb, __u32 iid, __u8 family, __u8 *src, __u8 *dst,
				__u8 kind, __u32 mtu)
{
	struct miss_event *ev = bpf_ringbuf_reserve(&miss_events, sizeof(*ev), 0);
	__u32 len = skb->len;

	if (!ev)
		return -1;
	ev->iid = iid;
	ev->family = family;
	ev->kind = kind;
	ev->mtu = mtu;
	ev->gso = skb->gso_size ? 1 : 0;
	__builtin_memcpy(ev->src, src, 16);
	__builtin_memcpy(ev->dst, dst, 16);
	len = len > ETH_HLEN ? len - ETH_HLEN : 0;
	if (len > MISS_COPY)
		len = MISS_COPY;
	len &= 0x7ff;	/* a bound the verifier can see */
	if (len < 1 || len > MISS_COPY || bpf_skb_load_bytes(skb, ETH_HLEN, ev->pkt, len))
		len = 0;
	ev->len = len;
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

/* No usable map-cache entry: local or intra-site traffic goes to the stack; anything
 * else is a miss reported to the daemon (at most one event per destination per
 * MISS_INTERVAL_NS) and dropped or passed on, as configured. */
static __always_inline int handle_miss(struct __sk_buff *skb, struct lisp_config *cfg,
				       struct if_conf *ic, __u8 family, __u8 *src, __u8 *dst)
{
	struct bpf_fib_lookup p = {};
	int rc;

	p.family = family == 4 ? AF_INET_ : AF_INET6_;
	p.ifindex = skb->ifindex;
	if (family == 4) {
		__builtin_memcpy(&p.ipv4_src, src, 4);
		__builtin_memcpy(&p.ipv4_dst, dst, 4);
	} else {
		__builtin_memcpy(p.ipv6_src, src, 16);
		__builtin_memcpy(p.ipv6_dst, dst, 16);
	}
	fib_set_table(&p, table_or_main(ic->table));
	rc = bpf_fib_lookup(skb, &p, sizeof(p), FIB_DIRECT | FIB_TBID);
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED) {
		count_add(C_LOCAL, 1);
		return TC_ACT_OK;
	}
	if ((rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) &&
	    bpf_map_lookup_elem(&eid_ifaces, &p.ifindex)) {
		count_add(C_LOCAL, 1);
		return TC_ACT_OK;
	}

	count_add(C_MISSES, 1);
	struct miss_key mk = {};
	__u64 now = bpf_ktime_get_ns();
	__u64 *last;

	mk.iid = ic->iid;
	mk.family = family;
	__builtin_memcpy(mk.dst, dst, 16);
	last = bpf_map_lookup_elem(&miss_seen, &mk);
	if (!last || now - *last >= MISS_INTERVAL_NS) {
		bpf_map_update_elem(&miss_seen, &mk, &now, BPF_ANY);
		if (punt(skb, ic->iid, family, src, dst, EV_MISS, 0) == 0)
			count_add(C_MISS_EVENTS, 1);
	}
	if (cfg->flags & CFG_MISS_PASS)
		return TC_ACT_OK;
	return drop(C_DROP_MISS);
}

/* RLOC choice: best priority among usable locators, weighted by the flow hash. */
static __always_inline struct rloc *choose_rloc(struct fwd_entry *e, __u32 hash)
{
	__u32 best = 256, total = 0, count = 0, point, i;
	__u32 n = e->n_rlocs;

	if (n > LISP_MAX_RLOCS)
		n = LISP_MAX_RLOCS;
	for (i = 0; i < LISP_MAX_RLOCS; i++) {
		struct rloc *r = &e->rlocs[i];

		if (i >= n)
			break;
		if (r->up && r->priority != 255 && r->priority < best)
			best = r->priority;
	}
	if (best == 256)
		return 0;
	for (i = 0; i < LISP_MAX_RLOCS; i++) {
		struct rloc *r = &e->rlocs[i];

		if (i >= n)
			break;
		if (r->up && r->priority == best) {
			total += r->weight;
			count++;
		}
	}
	if (!count)
		return 0;
	point = total ? hash % total : hash % count;
	for (i = 0; i < LISP_MAX_RLOCS; i++) {
		struct rloc *r = &e->rlocs[i];

		if (i >= n)
			break;
		if (!r->up || r->priority != best)
			continue;
		if (total) {
			if (point < r->weight)
				return r;
			point -= r->weight;
		} else {
			if (point == 0)
				return r;
			point--;
		}
	}
	return 0;
}

SEC("tc")
int lisp_encap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 zero = 0, ifindex = skb->ifindex;
	__u8 src[16] = {}, dst[16] = {};
	struct lisp_config *cfg;
	struct fwd_entry *e;
	struct if_conf icv, *ic = &icv;
	__u8 family, ttl, tos;
	__u16 l3proto;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	if (!cached_conf(&eid_ifaces, 0, ifindex, &icv.iid, &icv.table))
		return TC_ACT_OK;
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return TC_ACT_OK;
	l3proto = eth->h_proto;

	if (l3proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		__u8 first;

		if ((void *)(ip + 1) > data_end)
			return TC_ACT_OK;
		first = ((__u8 *)&ip->daddr)[0];
		/* multicast, broadcast, loopback: not for the overlay */
		if ((first & 0xf0) == 0xe0 || first == 127 || ip->daddr == 0xffffffff)
			return TC_ACT_OK;
		family = 4;
		ttl = ip->ttl;
		tos = ip->tos;
		__builtin_memcpy(src, &ip->saddr, 4);
		__builtin_memcpy(dst, &ip->daddr, 4);
		struct lpm_key4 k = {.prefixlen = 64};

		*(__u32 *)k.iid = bpf_htonl(ic->iid);
		__builtin_memcpy(k.addr, dst, 4);
		e = bpf_map_lookup_elem(&fwd_v4, &k);
	} else if (l3proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		__u8 b0, b1;

		if ((void *)(ip6 + 1) > data_end)
			return TC_ACT_OK;
		b0 = ip6->daddr.in6_u.u6_addr8[0];
		b1 = ip6->daddr.in6_u.u6_addr8[1];
		/* multicast and link-local (neighbour discovery) stay local */
		if (b0 == 0xff || (b0 == 0xfe && (b1 & 0xc0) == 0x80))
			return TC_ACT_OK;
		family = 6;
		ttl = ip6->hop_limit;
		tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
		__builtin_memcpy(src, &ip6->saddr, 16);
		__builtin_memcpy(dst, &ip6->daddr, 16);
		struct lpm_key6 k = {.prefixlen = 160};

		*(__u32 *)k.iid = bpf_htonl(ic->iid);
		__builtin_memcpy(k.addr, dst, 16);
		e = bpf_map_lookup_elem(&fwd_v6, &k);
	} else {
		return TC_ACT_OK;
	}

	if (!e || e->action == ACT_MAP_REQUEST)
		return handle_miss(skb, cfg, ic, family, src, dst);
	if (e->action == ACT_NATIVE) {
		count_add(C_NATIVE, 1);
		return TC_ACT_OK;
	}
	if (e->action != ACT_ENCAP)
		return drop(C_DROP_NEGATIVE);
	if (ttl <= 1) {
		/* let the stack answer with ICMP time exceeded */
		count_add(C_TTL_EXPIRED, 1);
		return TC_ACT_OK;
	}

	__u32 hash = bpf_get_hash_recalc(skb);
	struct rloc *r = choose_rloc(e, hash);

	if (!r)
		return drop(C_DROP_NO_RLOC);

	/* Route the outer destination before touching the packet. */
	struct bpf_fib_lookup p = {};
	__u8 ofam = r->family;

	p.ifindex = skb->ifindex;
	if (ofam == 4) {
		if (!cfg->has_src4)
			return drop(C_DROP_NO_SOURCE);
		p.family = AF_INET_;
		p.tos = tos;
		__builtin_memcpy(&p.ipv4_src, cfg->src4, 4);
		__builtin_memcpy(&p.ipv4_dst, r->addr, 4);
	} else {
		if (!cfg->has_src6)
			return drop(C_DROP_NO_SOURCE);
		p.family = AF_INET6_;
		__builtin_memcpy(p.ipv6_src, cfg->src6, 16);
		__builtin_memcpy(p.ipv6_dst, r->addr, 16);
	}
	__u32 utable = table_or_main(cfg->underlay_table);

	fib_set_table(&p, utable);
	int rc = cached_fib_lookup(skb, &p, 0, ofam, (const __u32 *)r->addr, utable, ofam == 4 ? tos : 0);
	__u32 inner_len = skb->len - ETH_HLEN;

	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH &&
	    rc != BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return drop(C_DROP_FIB);

	/* MTU (RFC 9300 7.1): the packet plus the outer header must fit the egress.  A GSO
	 * packet is cut into segments of gso_size plus the inner headers, each of which
	 * grows by the outer header.  Too big: punted, the daemon sends it through a socket
	 * (outer fragmentation) or answers ICMP Too Big with the MTU left for the inner. */
	__u32 mtu = rc == BPF_FIB_LKUP_RET_SUCCESS ? p.mtu_result : 0;
	int too_big = rc == BPF_FIB_LKUP_RET_FRAG_NEEDED;

	if (!mtu)	/* no neighbour yet, or too big already: ask the device */
		bpf_check_mtu(skb, p.ifindex, &mtu, 0, 0);
	if (mtu)
		too_big |= (skb->gso_size ? skb->gso_size + inner_headers(skb, family) : inner_len) +
				   room_for(ofam) > mtu;
	if (too_big) {
		__u32 left = mtu > room_for(ofam) ? mtu - room_for(ofam) : 0;

		if (punt(skb, ic->iid, family, src, dst, EV_TOO_BIG, left))
			return drop(C_DROP_TOO_BIG);
		count_add(C_TOO_BIG, 1);
		return TC_ACT_SHOT;
	}

	/* Build the outer headers while the entry's fields are at hand. */
	__u32 iid = ic->iid & 0xffffff;
	__u32 w1 = LISP_N_BIT | (nonce24() & 0xffffff);
	__u32 w2 = iid << 8;
	__u16 sport = bpf_htons(0xc000 | (hash & 0x3fff));

	if (iid)
		w1 |= LISP_I_BIT;
	if (cfg->flags & CFG_LSB_VALID) {
		w1 |= LISP_L_BIT;
		w2 |= iid ? (cfg->lsb & 0xff) : cfg->lsb;
	}
	ttl -= 1;

	struct lisp4 o4 = {};
	struct lisp6 o6 = {};
	__u64 flags = ADJ_ENCAP_L4_UDP | ADJ_ENCAP_L2(LISP_HDR_LEN);
	int room;

	if (ofam == 4) {
		o4.ip.version = 4;
		o4.ip.ihl = 5;
		o4.ip.tos = tos;
		o4.ip.tot_len = bpf_htons(inner_len + OVERHEAD4);
		o4.ip.ttl = ttl;
		o4.ip.protocol = IPPROTO_UDP;
		__builtin_memcpy(&o4.ip.saddr, cfg->src4, 4);
		__builtin_memcpy(&o4.ip.daddr, r->addr, 4);
		o4.ip.check = ip4_checksum(&o4.ip);
		o4.udp.source = sport;
		o4.udp.dest = bpf_htons(LISP_DATA_PORT);
		o4.udp.len = bpf_htons(inner_len + 16);
		o4.w1 = bpf_htonl(w1);
		o4.w2 = bpf_htonl(w2);
		flags |= ADJ_ENCAP_L3_IPV4;
		room = OVERHEAD4;
	} else {
		o6.ip.version = 6;
		o6.ip.priority = tos >> 4;
		o6.ip.flow_lbl[0] = ((tos & 0xf) << 4) | ((hash >> 16) & 0xf);
		o6.ip.flow_lbl[1] = (hash >> 8) & 0xff;
		o6.ip.flow_lbl[2] = hash & 0xff;
		o6.ip.payload_len = bpf_htons(inner_len + 16);
		o6.ip.nexthdr = IPPROTO_UDP;
		o6.ip.hop_limit = ttl;
		__builtin_memcpy(&o6.ip.saddr, cfg->src6, 16);
		__builtin_memcpy(&o6.ip.daddr, r->addr, 16);
		o6.udp.source = sport;
		o6.udp.dest = bpf_htons(LISP_DATA_PORT);
		o6.udp.len = o6.ip.payload_len;
		o6.w1 = bpf_htonl(w1);
		o6.w2 = bpf_htonl(w2);
		flags |= ADJ_ENCAP_L3_IPV6;
		room = OVERHEAD6;
	}

	/* Inner TTL / hop limit: we forward as a router.  A UDP GSO packet (datagrams of one
	 * flow merged by GRO forwarding) keeps its gso_size: it marks datagram boundaries. */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (family == 4) {
		struct iphdr *ip = data + ETH_HLEN;

		if ((void *)(ip + 1) > data_end)
			return drop(C_DROP_BAD_INNER);
		__u32 check = ip->check;

		check += bpf_htons(0x0100);
		ip->check = (__u16)(check + (check >= 0xffff));
		ip->ttl = ttl;
		if (skb->gso_size && ip->protocol == IPPROTO_UDP)
			flags |= ADJ_FIXED_GSO;
	} else {
		struct ipv6hdr *ip6 = data + ETH_HLEN;

		if ((void *)(ip6 + 1) > data_end)
			return drop(C_DROP_BAD_INNER);
		ip6->hop_limit = ttl;
		if (skb->gso_size && ip6->nexthdr == IPPROTO_UDP)
			flags |= ADJ_FIXED_GSO;
	}

	/* Packets and bytes on the wire: a GSO packet counts its segments, each with its own
	 * headers (adjust_room resets gso_segs). */
	__u32 segs = gso_segments(skb, ETH_HLEN, family);
	__u32 wire = segs > 1 ? inner_len + (segs - 1) * inner_headers(skb, family) : inner_len;

	if (bpf_skb_adjust_room(skb, room, BPF_ADJ_ROOM_MAC, flags))
		return drop(C_DROP_ADJUST);
	/* The new room is in the linear area: write the outer headers directly. */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	if (ofam == 4) {
		struct lisp4 *o = data + ETH_HLEN;

		if ((void *)(o + 1) > data_end)
			return drop(C_DROP_ADJUST);
		__builtin_memcpy(o, &o4, sizeof(o4));
		eth->h_proto = bpf_htons(ETH_P_IP);
	} else {
		struct lisp6 *o = data + ETH_HLEN;

		if ((void *)(o + 1) > data_end)
			return drop(C_DROP_ADJUST);
		__builtin_memcpy(o, &o6, sizeof(o6));
		eth->h_proto = bpf_htons(ETH_P_IPV6);
	}
	count_add(C_ENCAPSULATED, segs);
	count_add(C_ENCAP_BYTES, wire);
	rloc_count(ofam, 0, r->addr, segs, wire);
	return forward(skb, &p, rc);
}

/* A GSO batch of LISP datagrams (a UDP_SEGMENT send, or UDP GRO) arrives whole over a
 * veth or a GRO-capable NIC: one skb, one outer header per gso_size segment, so
 * stripping the first header would corrupt the rest.  Send it out of the segmenting
 * veth, whose gso_max_segs of 1 makes the kernel segment it in software on transmit
 * (validate_xmit_skb); each datagram comes back in on the peer, where this program
 * decapsulates it like any other.  Without the veth the batch goes to the stack (a
 * UDP 4341 socket without UDP_GRO receives it segmented). */
static __always_inline int gso_split(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct lisp_config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (!cfg || !cfg->seg_ifindex)
		return TC_ACT_OK;
	if (skb->ifindex == cfg->seg_peer)	/* came back unsegmented: never loop */
		return drop(C_DROP_GSO);
	if (bpf_skb_store_bytes(skb, 0, cfg->seg_mac, 6, 0))
		return drop(C_DROP_ADJUST);
	count_add(C_GSO_BATCHES, 1);
	return bpf_redirect(cfg->seg_ifindex, 0);
}

/* Is the outer destination one of our RLOCs?  The configured source RLOC of its family
 * (the usual destination) is checked first, without a hash lookup. */
static __always_inline int is_local_rloc(const struct rloc_key *rk)
{
	__u32 zero = 0;
	struct lisp_config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (cfg) {
		const __u32 *a = (const __u32 *)rk->addr;

		if (rk->family == 4 && cfg->has_src4 && a[0] == *(const __u32 *)cfg->src4)
			return 1;
		if (rk->family == 6 && cfg->has_src6) {
			const __u32 *b = (const __u32 *)cfg->src6;

			if (a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3])
				return 1;
		}
	}
	return bpf_map_lookup_elem(&local_rlocs, rk) != 0;
}

SEC("tc")
int lisp_decap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct rloc_key rk = {};
	__u8 osrc[16] = {};
	__u8 ottl = 255, otos = 0;
	struct udphdr *udp;
	__u32 overhead;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end)
			return TC_ACT_OK;
		/* options and fragments go to the stack (it reassembles for the daemon) */
		if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x3fff)))
			return TC_ACT_OK;
		rk.family = 4;
		__builtin_memcpy(rk.addr, &ip->daddr, 4);
		__builtin_memcpy(osrc, &ip->saddr, 4);
		ottl = ip->ttl;
		otos = ip->tos;
		udp = (void *)(ip + 1);
		overhead = OVERHEAD4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return TC_ACT_OK;
		if (ip6->nexthdr != IPPROTO_UDP)
			return TC_ACT_OK;
		rk.family = 6;
		__builtin_memcpy(rk.addr, &ip6->daddr, 16);
		__builtin_memcpy(osrc, &ip6->saddr, 16);
		ottl = ip6->hop_limit;
		otos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
		udp = (void *)(ip6 + 1);
		overhead = OVERHEAD6;
	} else {
		return TC_ACT_OK;
	}
	if ((void *)(udp + 1) > data_end || udp->dest != bpf_htons(LISP_DATA_PORT))
		return TC_ACT_OK;
	if (!is_local_rloc(&rk))
		return TC_ACT_OK;
	__be32 *lisp = (void *)(udp + 1);
	__u8 *inner;

	/* Segments of a GSO batch (and some NICs' packets) keep only the outer headers in
	 * the linear area: pull the LISP header and an inner IPv6 header's worth. */
	if ((void *)(lisp + 2) + 40 > data_end && skb->len > (__u32)(data_end - data)) {
		__u32 want = ETH_HLEN + overhead + 40;

		if (want > skb->len)
			want = skb->len;
		if (bpf_skb_pull_data(skb, want))
			return drop(C_DROP_BAD_INNER);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		lisp = data + ETH_HLEN + overhead - LISP_HDR_LEN;
	}
	if ((void *)(lisp + 2) + 1 > data_end)
		return drop(C_DROP_BAD_INNER);
	inner = (void *)(lisp + 2);
	/* A GSO skb is either one encapsulated super-packet (our own encap of a TSO/GSO
	 * inner packet: the inner header's length covers the whole skb, strip once and
	 * keep GSO) or a batch of whole LISP datagrams (UDP_SEGMENT / UDP GRO: the first
	 * inner packet is only one segment long), which must be split first.  A super-packet
	 * of UDP datagrams is split too: stripped here it would keep its UDP-tunnel GSO type,
	 * and whoever segments it later would cut it as a tunnel packet. */
	if (skb->gso_size && skb->gso_segs != 1) {
		__u32 ilen;
		__u8 iproto;

		if ((void *)inner + 10 > data_end)
			return gso_split(skb);
		if ((inner[0] >> 4) == 4) {
			ilen = ((__u32)inner[2] << 8) | inner[3];
			iproto = inner[9];
		} else {
			ilen = (((__u32)inner[4] << 8) | inner[5]) + 40;
			iproto = inner[6];
		}
		if (ETH_HLEN + overhead + ilen < skb->len || iproto == IPPROTO_UDP)
			return gso_split(skb);
	}
	__u32 w1 = bpf_ntohl(lisp[0]);
	__u32 iid = (w1 & LISP_I_BIT) ? bpf_ntohl(lisp[1]) >> 8 : 0;
	__u8 ifam = inner[0] >> 4;
	struct iid_conf instv, *inst = &instv;

	if (!cached_conf(&instances, 1, iid, &instv.ifindex, &instv.table))
		return drop(C_DROP_UNKNOWN_IID);
	if (ifam != 4 && ifam != 6)
		return drop(C_DROP_BAD_INNER);

	__u64 flags = ADJ_FIXED_GSO;

	if (ifam != rk.family)
		flags |= ifam == 4 ? ADJ_DECAP_L3_IPV4 : ADJ_DECAP_L3_IPV6;
	__u32 table = table_or_main(inst->table);

	__u32 segs = skb->gso_size ? gso_segments(skb, ETH_HLEN + overhead, ifam) : 1;
	__u32 wire = skb->len - ETH_HLEN - overhead;

	if (segs > 1)
		wire += (segs - 1) * headers_at(skb, ETH_HLEN + overhead, ifam);

	if (bpf_skb_adjust_room(skb, -(__s32)overhead, BPF_ADJ_ROOM_MAC, flags))
		return drop(C_DROP_ADJUST);
	if (ifam != rk.family) {
		__be16 proto = bpf_htons(ifam == 4 ? ETH_P_IP : ETH_P_IPV6);

		if (bpf_skb_store_bytes(skb, 12, &proto, sizeof(proto), 0))
			return drop(C_DROP_ADJUST);
	}
	count_add(C_DECAPSULATED, segs);
	count_add(C_DECAP_BYTES, wire);
	rloc_count(rk.family, 1, osrc, segs, wire);

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	struct bpf_fib_lookup p = {};

	p.ifindex = skb->ifindex;
	/* RFC 9300 5.3 / RFC 6040: the inner TTL becomes min(inner, outer); an outer CE marks
	 * an ECN-capable inner packet CE, any other inner packet is dropped. */
	if (ifam == 4) {
		struct iphdr *ip = data + ETH_HLEN;

		if ((void *)(ip + 1) > data_end)
			return drop(C_DROP_BAD_INNER);
		__u8 ntos = ip->tos, nttl = ip->ttl < ottl ? ip->ttl : ottl;

		if ((otos & 3) == 3) {
			if (!(ntos & 3))
				return drop(C_DROP_ECN);
			ntos |= 3;
		}
		if (ntos != ip->tos || nttl != ip->ttl) {
			__u16 *w = (__u16 *)ip;
			__u16 old0 = w[0], old4 = w[4];

			ip->tos = ntos;
			ip->ttl = nttl;
			__u32 sum = (__u16)~ip->check + (__u16)~old0 + w[0] + (__u16)~old4 + w[4];

			sum = (sum & 0xffff) + (sum >> 16);
			sum = (sum & 0xffff) + (sum >> 16);
			ip->check = (__u16)~sum;
		}
		p.family = AF_INET_;
		p.tos = ip->tos;
		p.ipv4_src = ip->saddr;
		p.ipv4_dst = ip->daddr;
	} else {
		struct ipv6hdr *ip6 = data + ETH_HLEN;

		if ((void *)(ip6 + 1) > data_end)
			return drop(C_DROP_BAD_INNER);
		if ((otos & 3) == 3) {
			if (!((ip6->flow_lbl[0] >> 4) & 3))
				return drop(C_DROP_ECN);
			ip6->flow_lbl[0] |= 0x30;
		}
		if (ottl < ip6->hop_limit)
			ip6->hop_limit = ottl;
		p.family = AF_INET6_;
		__builtin_memcpy(p.ipv6_src, &ip6->saddr, 16);
		__builtin_memcpy(p.ipv6_dst, &ip6->daddr, 16);
	}
	fib_set_table(&p, table);
	int rc = cached_fib_lookup(skb, &p, 1, ifam, ifam == 4 ? &p.ipv4_dst : p.ipv6_dst, table,
				   ifam == 4 ? p.tos : 0);

	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED) {
		count_add(C_LOCAL, 1);
		return TC_ACT_OK;
	}
	return forward(skb, &p, rc);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
