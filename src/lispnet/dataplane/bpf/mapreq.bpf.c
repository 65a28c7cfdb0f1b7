// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * lispnet Map-Request offload: answer common-shape Map-Requests in the kernel.
 *
 *   mapreq_answer  tc clsact ingress of the interface carrying the node's IPv4
 *                  control address
 *
 * The daemon (lispnet/shell/mapreq_offload.py) owns every map.  `replies` is an LPM
 * trie of Map-Reply templates keyed by (instance-id, AFI, EID prefix): the exact bytes
 * the daemon sent for that prefix, nonce zeroed, plus their one's-complement sum.  The
 * daemon inserts a template the first time it answers a request with it (proxy replies
 * for leaf registrations, negative replies) and deletes it on every change that could
 * alter the answer, so a hit here is the daemon's own answer.
 *
 * Handled: IPv4 (no options, not fragmented) + UDP to the control address and port,
 * carrying either an ECM with no flag bits (S, D, E, M, R, N clear) around an IPv4
 * (no options) + UDP Map-Request, or a plain Map-Request (when the daemon accepts them).
 * The Map-Request must have no A/M/P/S/I/D bits, no source EID (AFI 0), exactly one
 * IPv4 ITR-RLOC equal to the outer source address, exactly one record with an IPv4 or
 * IPv6 EID, optionally inside an Instance-ID LCAF, and end right after it.  Everything
 * else (and every miss) goes on to the daemon unchanged (TC_ACT_OK).
 *
 * An answer rewrites the packet in place into the Map-Reply the daemon would send:
 * source = the control address, port; destination = the ITR-RLOC and the reply port
 * (inner UDP source port of an ECM, else the outer source port); IP ID 0, DF, TTL 64;
 * full UDP checksum; then bpf_redirect out of the same interface (egress): back toward
 * the requester on a real link (source and destination MAC swapped), and on lo through
 * loopback_xmit into the stack again.  (An ingress redirect would scrub the skb's route
 * and a lo packet to 127.0.0.0/8 would then be dropped as a martian unless
 * route_localnet is set; the egress path keeps the loopback route, as any lo packet.)
 *
 * Heartbeat: the daemon renews cfg.alive_until_ns every second; once it lapses (the
 * daemon was killed and could not detach us, or its loop is stuck) the program answers
 * nothing, so no reply outlives the daemon's knowledge by more than a few seconds.
 *
 * The request's UDP checksum is checked as the UDP layer would (none, valid, or the
 * pseudo-header seed of a locally sent CHECKSUM_PARTIAL packet); a bad one goes to the
 * stack, which drops it.
 *
 * Per-source rate limit: when cfg.rate > 0, every request this program parses as
 * ours costs one token from a token bucket per outer source address (LRU hash), the
 * same rate and burst as the daemon's limiter; an empty bucket drops the request and
 * counts it.  Requests passed to the daemon pay again in the daemon's own bucket, so a
 * source never gets more than the configured rate.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define TMPL_MAX 256
#define NS_PER_TOKEN 1000000000ULL

/* Map-Request first word: A, M, P, S, I, D bits go to the daemon. */
#define MREQ_SLOW 0x0F102000U

enum {
	C_ECM_ANSWERED,	 /* ECM Map-Requests answered here */
	C_PLAIN_ANSWERED, /* plain Map-Requests answered here */
	C_PROXY,	 /* answered: proxy Map-Reply */
	C_NEG_UNREG,	 /* answered: negative, configured but unregistered EID */
	C_NEG_NONEID,	 /* answered: negative, non-EID space */
	C_ECM_LIMITED,	 /* ECMs dropped by the per-source bucket */
	C_PLAIN_LIMITED, /* plain Map-Requests dropped by the per-source bucket */
	C_PASSED,	 /* parsed as a request to us but handed to the daemon (shape or miss) */
	C_ERRORS,	 /* rewrite failed after the packet was changed (dropped) */
	C_MAX,
};

enum { K_PROXY = 1, K_NEG_UNREG = 2, K_NEG_NONEID = 3 };

struct cfg {
	__u32 addr;	/* control IPv4 address, network order; 0 = offload off */
	__u16 port;	/* control port, network order */
	__u8 accept_plain;
	__u8 pad;
	__u64 rate;	/* tokens per second; 0 = no limit */
	__u64 burst;	/* bucket size in tokens */
	__u64 alive_until_ns; /* CLOCK_MONOTONIC: the daemon's heartbeat; later = answer nothing */
};

struct tkey {
	__u32 prefixlen; /* 64 + EID mask-len */
	__u8 iid[4];	 /* big-endian */
	__u8 afi;
	__u8 pad[3];
	__u8 addr[16];
};

struct tval {
	__u16 len;
	__u8 kind;
	__u8 pad;
	__u32 sum;	/* one's-complement sum of the 16-bit words of data (nonce 0) */
	__u8 data[TMPL_MAX];
};

struct bucket {
	__u64 tokens;	/* in 1e-9 tokens */
	__u64 last_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cfg);
} mreq_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tkey);
	__type(value, struct tval);
} mreq_replies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} mreq_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct bucket);
} mreq_buckets SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&mreq_counters, &idx);

	if (v)
		*v += 1;
}

/* True when the source may send one more request now (one token taken). */
static __always_inline int bucket_allow(const struct cfg *c, __u32 src)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 cap = c->burst * NS_PER_TOKEN;
	struct bucket *b;
	__u64 tokens, elapsed;

	if (!c->rate)
		return 1;
	b = bpf_map_lookup_elem(&mreq_buckets, &src);
	if (!b) {
		struct bucket nb = { .tokens = cap - NS_PER_TOKEN, .last_ns = now };

		bpf_map_update_elem(&mreq_buckets, &src, &nb, BPF_ANY);
		return 1;
	}
	elapsed = now > b->last_ns ? now - b->last_ns : 0;
	if (elapsed >= cap / c->rate)
		tokens = cap;
	else
		tokens = b->tokens + elapsed * c->rate;
	if (tokens > cap)
		tokens = cap;
	b->last_ns = now;
	if (tokens < NS_PER_TOKEN) {
		b->tokens = tokens;
		return 0;
	}
	b->tokens = tokens - NS_PER_TOKEN;
	return 1;
}

static __always_inline __u32 fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u32)s;
}

/* Sum of the 16-bit big-endian words of a 32-bit network-order value. */
static __always_inline __u32 words32(__u32 be)
{
	__u32 h = bpf_ntohl(be);

	return (h >> 16) + (h & 0xffff);
}

struct pseudo4 {
	__u32 saddr;
	__u32 daddr;
	__u8 zero;
	__u8 proto;
	__u16 len;
};

static __always_inline __u16 fold16(__s64 c)
{
	__u64 s = (__u32)c;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/*
 * The request's UDP checksum, as the UDP layer would accept it: none (0, legal over
 * IPv4), a valid full checksum, or the pseudo-header seed of a locally sent packet whose
 * checksum was left to the device (CHECKSUM_PARTIAL: loopback, veth), which never
 * crossed a wire.  `len` is the UDP length; only the lengths of the shapes we take are
 * summed (constant sizes for the verifier).
 */
static __always_inline int udp_csum_ok(struct udphdr *udp, void *data_end, __u32 saddr, __u32 daddr, __u32 len)
{
	struct pseudo4 ph = { .saddr = saddr, .daddr = daddr, .proto = IPPROTO_UDP, .len = bpf_htons(len) };
	__s64 p, s;

	if (!udp->check)
		return 1;
	p = bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0);
	if (p < 0)
		return 0;
	if (udp->check == fold16(p))
		return 1;
	switch (len) {
#define SUM_CASE(n)                                                        \
	case n:                                                            \
		if ((void *)udp + n > data_end)                            \
			return 0;                                          \
		s = bpf_csum_diff(0, 0, (__be32 *)udp, n, (__u32)p);       \
		break;
	SUM_CASE(36) SUM_CASE(48) SUM_CASE(60) SUM_CASE(68) SUM_CASE(80) SUM_CASE(92)
#undef SUM_CASE
	default:
		return 0;
	}
	return s >= 0 && fold16(s) == 0xffff;
}

#define ETH_LEN 14
#define IP_LEN 20
#define UDP_LEN 8
#define L4 (ETH_LEN + IP_LEN)
#define PAY (L4 + UDP_LEN)
#define MREQ_MAX 52 /* header 12, source EID AFI 2, ITR-RLOC 6, record 4 + LCAF 12 + IPv6 16 */

SEC("tc")
int mapreq_answer(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	struct cfg *c;
	__u32 zero = 0;
	__u8 *p, *m;
	__u32 mreq_off, mreq_len, saddr, daddr, first, pay_len;
	__u16 reply_port;
	__u8 nonce[8];
	int ecm;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	c = bpf_map_lookup_elem(&mreq_cfg, &zero);
	if (!c || !c->addr || bpf_ktime_get_ns() > c->alive_until_ns)
		return TC_ACT_OK;
	if (data + PAY + 4 > data_end) {
		if (skb->len < PAY + 4 || bpf_skb_pull_data(skb, skb->len > PAY + 4 + 64 ? PAY + 4 + 64 : skb->len))
			return TC_ACT_OK;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		eth = data;
		if (data + PAY + 4 > data_end)
			return TC_ACT_OK;
	}
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip = data + ETH_LEN;
	if (ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP || ip->daddr != c->addr)
		return TC_ACT_OK;
	if (ip->frag_off & bpf_htons(0x3fff))
		return TC_ACT_OK;
	udp = data + L4;
	if (udp->dest != c->port)
		return TC_ACT_OK;
	p = data + PAY;
	pay_len = bpf_ntohs(udp->len);
	if (pay_len < UDP_LEN || bpf_ntohs(ip->tot_len) != IP_LEN + pay_len || skb->len < ETH_LEN + IP_LEN + pay_len)
		return TC_ACT_OK;
	pay_len -= UDP_LEN;
	if (p[0] == 0x80 && !(p[1] & 0x60)) {
		ecm = 1;
	} else if ((p[0] >> 4) == 1 && c->accept_plain) {
		ecm = 0;
	} else {
		return TC_ACT_OK;
	}
	saddr = ip->saddr;
	daddr = ip->daddr;
	if (!bucket_allow(c, saddr)) {
		count(ecm ? C_ECM_LIMITED : C_PLAIN_LIMITED);
		return TC_ACT_SHOT;
	}
	reply_port = udp->source;
	mreq_off = PAY;
	mreq_len = pay_len;
	if (ecm) {
		/* ECM header 4, inner IPv4 20 (no options), inner UDP 8 */
		struct iphdr *iip;
		struct udphdr *iudp;

		if (skb->len < PAY + 4 + IP_LEN + UDP_LEN + 28)
			goto pass;
		if (bpf_skb_pull_data(skb, skb->len > PAY + 32 + MREQ_MAX ? PAY + 32 + MREQ_MAX : skb->len))
			goto pass;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		if (data + PAY + 32 > data_end)
			goto pass;
		iip = data + PAY + 4;
		iudp = data + PAY + 4 + IP_LEN;
		if (*(__u8 *)iip != 0x45 || iip->protocol != IPPROTO_UDP || bpf_ntohs(iip->tot_len) != pay_len - 4)
			goto pass;
		if (bpf_ntohs(iudp->len) != pay_len - 4 - IP_LEN)
			goto pass;
		reply_port = iudp->source;
		mreq_off = PAY + 32;
		mreq_len = pay_len - 32;
	}
	/* the Map-Request: all shapes we take are 28, 40 or 52 bytes long */
	if (mreq_len != 28 && mreq_len != 40 && mreq_len != 52)
		goto pass;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + PAY > data_end || !udp_csum_ok(data + L4, data_end, saddr, daddr, pay_len + UDP_LEN))
		goto pass;
	if (mreq_off > PAY + 32)
		goto pass;
	m = data + mreq_off;
	if ((void *)m + 28 > data_end)
		goto pass;
	__builtin_memcpy(&first, m, 4);
	first = bpf_ntohl(first);
	if ((first >> 28) != 1 || (first & MREQ_SLOW) || (first & 0x1F00) || (first & 0xFF) != 1)
		goto pass;
	/* no source EID; one IPv4 ITR-RLOC = the outer source */
	if (m[12] || m[13] || m[14] || m[15] != 1)
		goto pass;
	if (*(__u32 *)(m + 16) != saddr)
		goto pass;
	__builtin_memcpy(nonce, m + 4, 8);

	struct tkey key = {};
	__u8 mask_len = m[21];
	__u16 afi = ((__u16)m[22] << 8) | m[23];

	if (afi == 1) {
		if (mreq_len != 28 || mask_len > 32)
			goto pass;
		key.afi = 1;
		__builtin_memcpy(key.addr, m + 24, 4);
	} else if (afi == 2) {
		if (mreq_len != 40 || mask_len > 128 || (void *)m + 40 > data_end)
			goto pass;
		key.afi = 2;
		__builtin_memcpy(key.addr, m + 24, 16);
	} else if (afi == 16387) {
		/* Instance-ID LCAF: rsvd1 flags type=2 iid-mask-len length(2) iid(4) AFI(2) addr */
		__u16 len, iafi;

		if ((void *)m + 40 > data_end || m[26] != 2)
			goto pass;
		len = ((__u16)m[28] << 8) | m[29];
		iafi = ((__u16)m[34] << 8) | m[35];
		__builtin_memcpy(key.iid, m + 30, 4);
		if (iafi == 1) {
			if (mreq_len != 40 || len != 10 || mask_len > 32)
				goto pass;
			key.afi = 1;
			__builtin_memcpy(key.addr, m + 36, 4);
		} else if (iafi == 2) {
			if (mreq_len != 52 || len != 22 || mask_len > 128 || (void *)m + 52 > data_end)
				goto pass;
			key.afi = 2;
			__builtin_memcpy(key.addr, m + 36, 16);
		} else {
			goto pass;
		}
	} else {
		goto pass;
	}
	key.prefixlen = 64 + mask_len;

	struct tval *t = bpf_map_lookup_elem(&mreq_replies, &key);
	__u32 len;

	if (!t)
		goto pass;
	len = t->len;
	if (len < 12 || len > TMPL_MAX || (len & 3))
		goto pass;

	/* from here on the packet is rewritten: failures drop it */
	__u32 new_len = ETH_LEN + IP_LEN + UDP_LEN + len;
	__u16 dport = reply_port;
	__u16 sport = c->port;
	__u8 kind = t->kind;
	__u32 tsum = t->sum;

	if (bpf_skb_change_tail(skb, new_len, 0))
		goto fail;
	if (bpf_skb_store_bytes(skb, PAY, t->data, len, 0))
		goto fail;
	if (bpf_skb_store_bytes(skb, PAY + 4, nonce, 8, 0))
		goto fail;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + PAY > data_end)
		goto fail;
	eth = data;
	ip = data + ETH_LEN;
	udp = data + L4;
	{
		__u8 tmp[ETH_ALEN];

		__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
		__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
	}
	*(__u8 *)ip = 0x45;
	ip->tos = 0;
	ip->tot_len = bpf_htons(IP_LEN + UDP_LEN + len);
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000);
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->saddr = daddr;
	ip->daddr = saddr;
	ip->check = 0;
	{
		__u64 s = 0x4500 + (IP_LEN + UDP_LEN + len) + 0x4000 + ((64 << 8) | IPPROTO_UDP);

		s += words32(daddr) + words32(saddr);
		ip->check = bpf_htons(~fold(s) & 0xffff);
	}
	udp->source = sport;
	udp->dest = dport;
	udp->len = bpf_htons(UDP_LEN + len);
	{
		__u32 n0, n1;
		__u64 s = tsum;

		__builtin_memcpy(&n0, nonce, 4);
		__builtin_memcpy(&n1, nonce + 4, 4);
		s += words32(n0) + words32(n1);
		s += words32(daddr) + words32(saddr) + IPPROTO_UDP + (UDP_LEN + len);
		s += bpf_ntohs(sport) + bpf_ntohs(dport) + (UDP_LEN + len);
		__u16 csum = ~fold(s) & 0xffff;

		udp->check = csum ? bpf_htons(csum) : 0xffff;
	}
	count(ecm ? C_ECM_ANSWERED : C_PLAIN_ANSWERED);
	count(kind == K_PROXY ? C_PROXY : kind == K_NEG_UNREG ? C_NEG_UNREG : C_NEG_NONEID);
	return bpf_redirect(skb->ifindex, 0);

pass:
	count(C_PASSED);
	return TC_ACT_OK;
fail:
	count(C_ERRORS);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
