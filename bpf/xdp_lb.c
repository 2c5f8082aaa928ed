//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* metalflow L4 load balancer data plane.
 *
 * xdp_balance: one-armed, stateless-by-default XDP load balancer. A packet
 *   to a VIP gets a backend from the VIP's Maglev ring (indexed by a hash of
 *   its 5-tuple), is wrapped in an outer IP header addressed to the backend
 *   and sent back out the interface it came in on, to the next hop.
 * xdp_decap: runs on backends; strips that outer header so the stack sees
 *   the client's packet addressed to the VIP (which sits on loopback).
 * xdp_pass: does nothing; the benchmark baseline.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/icmpv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lb.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Ring size is fixed at load time: every inner ring must match the template. */
const volatile __u32 ring_size = DEFAULT_RING_SIZE;
/* UDP port of GUE-encapsulated packets, for both the balancer and decap. */
const volatile __u16 gue_port = DEFAULT_GUE_PORT;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
} vips SEC(".maps");

/* Addresses that carry any VIP, so fragments and packets with IP options,
 * whose ports we do not parse, can still be recognised as VIP traffic. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip_addr);
	__type(value, __u32);
} vip_addrs SEC(".maps");

struct maglev_ring {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DEFAULT_RING_SIZE);
	__type(key, __u32);
	__type(value, __u32);
};

/* One ring per VIP; userspace builds a new ring and swaps it in with a
 * single update of this map, so a packet sees the old or the new table,
 * never a mix. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MAX_VIPS);
	__type(key, __u32);
	__array(values, struct maglev_ring);
} maglev_rings SEC(".maps");

/* Index 0 is never used, so an all-zero ring slot means "no backend". */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

/* Per-CPU LRU lists (BPF_F_NO_COMMON_LRU): with RSS a flow stays on one
 * CPU, and CPUs do not contend on one list lock. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DEFAULT_LRU_SIZE);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct flow_key);
	__type(value, struct flow_backend);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_MEMBERS);
	__type(key, struct member_key);
	__type(value, struct member);
} members SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct syn_window);
} syn_windows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_VIPS);
	__type(key, __u32);
	__type(value, struct counter);
} vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct counter);
} backend_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_REASON_MAX);
	__type(key, __u32);
	__type(value, struct counter);
} drop_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EV_MAX);
	__type(key, __u32);
	__type(value, struct counter);
} event_stats SEC(".maps");

/* linux/icmp.h drags in libc socket headers, so the one ICMP header we
 * build is spelled out here. */
#define IP_DF 0x4000
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 unused;
	__be16 mtu;
};

/* Offsets of the outer headers we prepend. */
#define IPV4_HDR_LEN 20
#define IPV6_HDR_LEN 40
#define UDP_HDR_LEN 8
#define ICMP_QUOTE_LEN 8 /* bytes of the offending packet's payload echoed back */

struct packet {
	struct flow_key flow;
	__u32 l3_len; /* inner IP packet length from its header */
	__u32 pkt_len;
	__u8 tos;
	__u8 syn; /* TCP SYN without ACK: a new connection */
	__u8 df;
	__u8 refused; /* drop reason when a parser returns PARSE_REFUSE */
};

static __always_inline void count(void *map, __u32 idx, __u64 bytes)
{
	struct counter *c = bpf_map_lookup_elem(map, &idx);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

static __always_inline int drop(__u32 reason, __u64 bytes)
{
	count(&drop_stats, reason, bytes);
	return XDP_DROP;
}

static __always_inline __u32 rotl32(__u32 x, __u32 r)
{
	return (x << r) | (x >> (32 - r));
}

/* Murmur3 rounds over 32-bit words. The Go side (lbnode.FlowHash) mirrors
 * this exactly; nodes agree because both read the words little-endian. */
static __always_inline __u32 hash_word(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rotl32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 hash_flow(const struct flow_key *f, __u32 seed)
{
	__u32 h = seed;

	h = hash_word(h, f->src[0]);
	h = hash_word(h, f->src[1]);
	h = hash_word(h, f->src[2]);
	h = hash_word(h, f->src[3]);
	h = hash_word(h, f->dst[0]);
	h = hash_word(h, f->dst[1]);
	h = hash_word(h, f->dst[2]);
	h = hash_word(h, f->dst[3]);
	h = hash_word(h, (__u32)f->sport | ((__u32)f->dport << 16));
	h = hash_word(h, f->proto);
	h ^= 40;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 csum_fold(__u32 csum)
{
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return (__u16)~csum;
}

static __always_inline int is_vip_addr(const __u32 *addr, __u8 family)
{
	struct vip_addr key = { .family = family };

	key.addr[0] = addr[0];
	if (family == FAMILY_V6) {
		key.addr[1] = addr[1];
		key.addr[2] = addr[2];
		key.addr[3] = addr[3];
	}
	return bpf_map_lookup_elem(&vip_addrs, &key) != NULL;
}

/* What the parsers return besides an XDP verdict. PARSE_REFUSE means the
 * packet must not be balanced: balance() drops it (counting p->refused) if
 * its destination carries a VIP and leaves it to the stack otherwise, with
 * one vip_addrs lookup for every way a packet can be refused. */
#define PARSE_OK -1
#define PARSE_REFUSE -2

static __always_inline int refuse(struct packet *p, __u32 reason)
{
	p->refused = reason;
	return PARSE_REFUSE;
}

/* Checks the TCP or UDP header against the IP header's length and reads the
 * ports. Whatever is balanced reaches the backend as it came, so a header
 * that does not fit its packet must be refused here: the backend's stack
 * would drop it anyway, and a lying IP length would fool the MTU check and
 * let a "too big" reply be provoked towards a spoofed source. The IP length
 * may be shorter than the frame (Ethernet padding), never longer. */
static __always_inline int parse_l4(void *l4, void *data_end, struct packet *p, __u32 ip_hdr_len)
{
	__u32 l4_len;

	if (p->l3_len < ip_hdr_len || p->l3_len > p->pkt_len - sizeof(struct ethhdr))
		return refuse(p, DROP_MALFORMED);
	l4_len = p->l3_len - ip_hdr_len;
	if (p->flow.proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		/* The length checks imply the bounds check; the verifier needs
		 * it spelled out. */
		if (l4_len < sizeof(*th) || (void *)(th + 1) > data_end)
			return refuse(p, DROP_MALFORMED);
		if (th->doff < 5 || th->doff * 4 > l4_len)
			return refuse(p, DROP_MALFORMED);
		p->flow.sport = th->source;
		p->flow.dport = th->dest;
		p->syn = th->syn && !th->ack;
		return PARSE_OK;
	}
	struct udphdr *uh = l4;

	if (l4_len < sizeof(*uh) || (void *)(uh + 1) > data_end)
		return refuse(p, DROP_MALFORMED);
	/* A UDP length short of the IP payload is allowed (the receiver trims
	 * to it); one past it, or shorter than the header, is not. Zero is only
	 * legal in an IPv6 jumbogram, which needs the hop-by-hop header we
	 * already refuse. */
	if (bpf_ntohs(uh->len) < sizeof(*uh) || bpf_ntohs(uh->len) > l4_len)
		return refuse(p, DROP_MALFORMED);
	p->flow.sport = uh->source;
	p->flow.dport = uh->dest;
	return PARSE_OK;
}

/* Returns PARSE_OK to carry on balancing, PARSE_REFUSE, or the XDP verdict. */
static __always_inline int parse_ipv4(void *data, void *data_end, struct packet *p)
{
	struct iphdr *iph = data + sizeof(struct ethhdr);

	/* Without a whole header we cannot even read the destination. */
	if ((void *)(iph + 1) > data_end || iph->version != 4)
		return XDP_PASS;
	p->flow.family = FAMILY_V4;
	p->flow.src[0] = iph->saddr;
	p->flow.dst[0] = iph->daddr;
	p->flow.proto = iph->protocol;
	p->tos = iph->tos;
	p->df = (iph->frag_off & bpf_htons(IP_DF)) != 0;
	p->l3_len = bpf_ntohs(iph->tot_len);

	/* An IHL under 5 does not cover the header it sits in. We cannot pick
	 * a backend for a fragment without its ports, and options would need
	 * parsing we do not trust at line rate. */
	if (iph->ihl < 5)
		return refuse(p, DROP_MALFORMED);
	if (iph->ihl != 5)
		return refuse(p, DROP_IP_OPTIONS);
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return refuse(p, DROP_FRAGMENT);
	if (p->flow.proto != IPPROTO_TCP && p->flow.proto != IPPROTO_UDP)
		return XDP_PASS;
	return parse_l4(iph + 1, data_end, p, IPV4_HDR_LEN);
}

static __always_inline int parse_ipv6(void *data, void *data_end, struct packet *p)
{
	struct ipv6hdr *ip6h = data + sizeof(struct ethhdr);

	if ((void *)(ip6h + 1) > data_end || ip6h->version != 6)
		return XDP_PASS;
	p->flow.family = FAMILY_V6;
	__builtin_memcpy(p->flow.src, &ip6h->saddr, 16);
	__builtin_memcpy(p->flow.dst, &ip6h->daddr, 16);
	p->flow.proto = ip6h->nexthdr;
	p->tos = (ip6h->priority << 4) | (ip6h->flow_lbl[0] >> 4);
	p->df = 1; /* IPv6 routers never fragment */
	p->l3_len = bpf_ntohs(ip6h->payload_len) + IPV6_HDR_LEN;

	switch (p->flow.proto) {
	case IPPROTO_FRAGMENT:
		return refuse(p, DROP_FRAGMENT);
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
		return refuse(p, DROP_IP_OPTIONS);
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		break;
	default:
		return XDP_PASS;
	}
	return parse_l4(ip6h + 1, data_end, p, IPV6_HDR_LEN);
}

static __always_inline struct vip_meta *find_vip(const struct packet *p)
{
	struct vip_key key = {
		.port = p->flow.dport,
		.proto = p->flow.proto,
		.family = p->flow.family,
	};
	struct vip_meta *vip;

	__builtin_memcpy(key.addr, p->flow.dst, 16);
	vip = bpf_map_lookup_elem(&vips, &key);
	if (vip)
		return vip;
	key.port = 0;
	return bpf_map_lookup_elem(&vips, &key);
}

/* Counts this CPU's SYNs in one-second windows. Under a flood, new flows are
 * kept out of the LRU so the flood cannot evict established flows. */
static __always_inline int syn_flood(const struct lb_config *cfg)
{
	__u32 zero = 0;
	struct syn_window *w;
	__u64 now;

	if (!cfg->syn_flood_threshold)
		return 0;
	w = bpf_map_lookup_elem(&syn_windows, &zero);
	if (!w)
		return 0;
	now = bpf_ktime_get_ns();
	if (now - w->start_ns > 1000000000ULL) {
		w->start_ns = now;
		w->syns = 0;
	}
	w->syns++;
	return w->syns > cfg->syn_flood_threshold;
}

/* Picks the backend index for a flow: the LRU first (so a ring change does
 * not move an established flow, and a drained backend keeps its flows), then
 * the VIP's Maglev ring. Returns 0 when the VIP has no usable backend. */
static __always_inline __u32 pick_backend(struct packet *p, const struct vip_meta *vip,
					  const struct lb_config *cfg, __u32 flow_hash, struct backend **out)
{
	int use_lru = !(vip->flags & VIP_F_NO_LRU);
	struct flow_backend *cached;
	struct backend *b;
	__u32 idx, slot, *owner;
	void *ring;

	if (use_lru && p->syn && syn_flood(cfg)) {
		count(&event_stats, EV_SYN_FLOOD_BYPASS, p->pkt_len);
		use_lru = 0;
	}
	/* A SYN starts a new connection even if its 5-tuple is remembered, so
	 * it must not follow the LRU to a draining backend. */
	if (use_lru && !p->syn) {
		cached = bpf_map_lookup_elem(&flows, &p->flow);
		if (cached) {
			idx = cached->backend;
			b = bpf_map_lookup_elem(&backends, &idx);
			if (b && (b->flags & BACKEND_F_VALID)) {
				count(&event_stats, EV_LRU_HIT, p->pkt_len);
				*out = b;
				return idx;
			}
		}
		count(&event_stats, EV_LRU_MISS, p->pkt_len);
	}

	ring = bpf_map_lookup_elem(&maglev_rings, &vip->vip_num);
	if (!ring)
		return 0;
	if (vip->flags & (VIP_F_HASH_DPORT_ONLY | VIP_F_HASH_NO_SRC_PORT)) {
		struct flow_key k = p->flow;

		if (vip->flags & VIP_F_HASH_DPORT_ONLY)
			__builtin_memset(k.src, 0, sizeof(k.src));
		k.sport = 0;
		slot = hash_flow(&k, cfg->hash_seed) % ring_size;
	} else {
		slot = flow_hash % ring_size;
	}
	owner = bpf_map_lookup_elem(ring, &slot);
	if (!owner || !*owner)
		return 0;
	idx = *owner;
	b = bpf_map_lookup_elem(&backends, &idx);
	if (!b || !(b->flags & BACKEND_F_VALID))
		return 0;
	if (use_lru) {
		struct flow_backend fb = { .backend = idx };

		bpf_map_update_elem(&flows, &p->flow, &fb, BPF_ANY);
	}
	*out = b;
	return idx;
}

/* Answers a too-big IPv4 packet with ICMP "fragmentation needed", quoting
 * its IP header and first 8 payload bytes, from the VIP back to the client. */
static __always_inline int send_frag_needed(struct xdp_md *ctx, __u32 max_inner)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	const int keep = sizeof(struct ethhdr) + IPV4_HDR_LEN + ICMP_QUOTE_LEN;
	const int grow = IPV4_HDR_LEN + sizeof(struct icmphdr);
	unsigned char client_mac[ETH_ALEN], our_mac[ETH_ALEN];
	struct ethhdr *eth = data;
	struct iphdr *iph, *orig;
	struct icmphdr *icmp;
	__u32 client, vip;

	if (data + keep > data_end)
		return drop(DROP_HEADROOM, 0);
	orig = data + sizeof(struct ethhdr);
	client = orig->saddr;
	vip = orig->daddr;
	__builtin_memcpy(client_mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(our_mac, eth->h_dest, ETH_ALEN);

	if (bpf_xdp_adjust_tail(ctx, keep - (int)(data_end - data)))
		return drop(DROP_HEADROOM, 0);
	if (bpf_xdp_adjust_head(ctx, -grow))
		return drop(DROP_HEADROOM, 0);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + keep + grow > data_end)
		return drop(DROP_HEADROOM, 0);

	eth = data;
	__builtin_memcpy(eth->h_dest, client_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, our_mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);

	iph = data + sizeof(struct ethhdr);
	iph->version = 4;
	iph->ihl = 5;
	iph->tos = 0;
	iph->tot_len = bpf_htons(IPV4_HDR_LEN + sizeof(struct icmphdr) + IPV4_HDR_LEN + ICMP_QUOTE_LEN);
	iph->id = 0;
	iph->frag_off = 0;
	iph->ttl = 64;
	iph->protocol = IPPROTO_ICMP;
	iph->check = 0;
	iph->saddr = vip;
	iph->daddr = client;
	iph->check = csum_fold(bpf_csum_diff(0, 0, (__be32 *)iph, IPV4_HDR_LEN, 0));

	icmp = (void *)(iph + 1);
	icmp->type = ICMP_DEST_UNREACH;
	icmp->code = ICMP_FRAG_NEEDED;
	icmp->checksum = 0;
	icmp->unused = 0;
	icmp->mtu = bpf_htons(max_inner);
	icmp->checksum = csum_fold(bpf_csum_diff(0, 0, (__be32 *)icmp,
						 sizeof(struct icmphdr) + IPV4_HDR_LEN + ICMP_QUOTE_LEN, 0));
	count(&event_stats, EV_ICMP_TOO_BIG, 0);
	return XDP_TX;
}

struct icmp6_pseudo {
	__u8 src[16];
	__u8 dst[16];
	__be32 len;
	__be32 nexthdr;
};

/* The IPv6 counterpart: ICMPv6 "packet too big". */
static __always_inline int send_packet_too_big(struct xdp_md *ctx, __u32 max_inner)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	const int keep = sizeof(struct ethhdr) + IPV6_HDR_LEN + ICMP_QUOTE_LEN;
	const int grow = IPV6_HDR_LEN + sizeof(struct icmp6hdr);
	const int icmp_len = sizeof(struct icmp6hdr) + IPV6_HDR_LEN + ICMP_QUOTE_LEN;
	unsigned char client_mac[ETH_ALEN], our_mac[ETH_ALEN];
	struct icmp6_pseudo ph = {};
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6h, *orig;
	struct icmp6hdr *icmp;
	__u32 csum;

	if (data + keep > data_end)
		return drop(DROP_HEADROOM, 0);
	orig = data + sizeof(struct ethhdr);
	__builtin_memcpy(ph.src, &orig->daddr, 16);
	__builtin_memcpy(ph.dst, &orig->saddr, 16);
	__builtin_memcpy(client_mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(our_mac, eth->h_dest, ETH_ALEN);

	if (bpf_xdp_adjust_tail(ctx, keep - (int)(data_end - data)))
		return drop(DROP_HEADROOM, 0);
	if (bpf_xdp_adjust_head(ctx, -grow))
		return drop(DROP_HEADROOM, 0);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + keep + grow > data_end)
		return drop(DROP_HEADROOM, 0);

	eth = data;
	__builtin_memcpy(eth->h_dest, client_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, our_mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IPV6);

	ip6h = data + sizeof(struct ethhdr);
	__builtin_memset(ip6h, 0, 4);
	ip6h->version = 6;
	ip6h->payload_len = bpf_htons(icmp_len);
	ip6h->nexthdr = IPPROTO_ICMPV6;
	ip6h->hop_limit = 64;
	__builtin_memcpy(&ip6h->saddr, ph.src, 16);
	__builtin_memcpy(&ip6h->daddr, ph.dst, 16);

	icmp = (void *)(ip6h + 1);
	icmp->icmp6_type = ICMPV6_PKT_TOOBIG;
	icmp->icmp6_code = 0;
	icmp->icmp6_cksum = 0;
	icmp->icmp6_mtu = bpf_htonl(max_inner);

	ph.len = bpf_htonl(icmp_len);
	ph.nexthdr = bpf_htonl(IPPROTO_ICMPV6);
	csum = bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0);
	csum = bpf_csum_diff(0, 0, (__be32 *)icmp, icmp_len, csum);
	icmp->icmp6_cksum = csum_fold(csum);
	count(&event_stats, EV_ICMP_TOO_BIG, 0);
	return XDP_TX;
}

/* Prepends the outer headers for backend b and readdresses the frame to the
 * next hop: IP-in-IP, or with gue an outer UDP header too (GUE variant 1:
 * the inner IP header follows the UDP header directly, its version nibble
 * telling IPv4 from IPv6). The outer source address, the IPv6 flow label
 * and the GUE source port carry flow entropy, so that backends' NICs spread
 * flows over their receive queues. */
static __always_inline int encap(struct xdp_md *ctx, const struct packet *p, const struct backend *b,
				 const struct lb_config *cfg, __u32 flow_hash, int gue)
{
	int ip_len = b->family == FAMILY_V4 ? IPV4_HDR_LEN : IPV6_HDR_LEN;
	int outer_len = ip_len + (gue ? UDP_HDR_LEN : 0);
	__u8 next = gue ? IPPROTO_UDP : p->flow.family == FAMILY_V4 ? IPPROTO_IPIP : IPPROTO_IPV6;
	unsigned char our_mac[ETH_ALEN];
	void *data, *data_end;
	struct ethhdr *eth;
	struct udphdr *uh;

	/* Bytes past the IP length (Ethernet padding, or anything a sender
	 * appended) would ride behind the outer packet, outside its length and
	 * uncounted by the MTU check: cut them off. */
	if (p->pkt_len - sizeof(struct ethhdr) > p->l3_len &&
	    bpf_xdp_adjust_tail(ctx, (int)p->l3_len - (int)(p->pkt_len - sizeof(struct ethhdr))))
		return drop(DROP_HEADROOM, p->pkt_len);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	/* The frame leaves from the port it arrived on, so the MAC it was sent
	 * to is ours. */
	__builtin_memcpy(our_mac, eth->h_dest, ETH_ALEN);

	if (bpf_xdp_adjust_head(ctx, -outer_len))
		return drop(DROP_HEADROOM, p->pkt_len);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return drop(DROP_HEADROOM, p->pkt_len);
	__builtin_memcpy(eth->h_dest, cfg->next_hop_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, our_mac, ETH_ALEN);

	if (b->family == FAMILY_V4) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) > data_end)
			return drop(DROP_HEADROOM, p->pkt_len);
		eth->h_proto = bpf_htons(ETH_P_IP);
		iph->version = 4;
		iph->ihl = 5;
		iph->tos = p->tos;
		iph->tot_len = bpf_htons(p->l3_len + outer_len);
		iph->id = 0;
		iph->frag_off = 0;
		iph->ttl = 64;
		iph->protocol = next;
		iph->check = 0;
		iph->saddr = (cfg->encap_src4 & bpf_htonl(0xffff0000)) | bpf_htonl(flow_hash & 0xffff);
		iph->daddr = b->addr[0];
		iph->check = csum_fold(bpf_csum_diff(0, 0, (__be32 *)iph, IPV4_HDR_LEN, 0));
		uh = (void *)(iph + 1);
	} else {
		struct ipv6hdr *ip6h = (void *)(eth + 1);

		if ((void *)(ip6h + 1) > data_end)
			return drop(DROP_HEADROOM, p->pkt_len);
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		ip6h->version = 6;
		ip6h->priority = p->tos >> 4;
		ip6h->flow_lbl[0] = ((p->tos & 0xf) << 4) | ((flow_hash >> 16) & 0xf);
		ip6h->flow_lbl[1] = flow_hash >> 8;
		ip6h->flow_lbl[2] = flow_hash;
		ip6h->payload_len = bpf_htons(p->l3_len + outer_len - IPV6_HDR_LEN);
		ip6h->nexthdr = next;
		ip6h->hop_limit = 64;
		__builtin_memcpy(&ip6h->saddr, cfg->encap_src6, 12);
		ip6h->saddr.in6_u.u6_addr32[3] = bpf_htonl(flow_hash);
		__builtin_memcpy(&ip6h->daddr, b->addr, 16);
		uh = (void *)(ip6h + 1);
	}
	if (!gue)
		return XDP_TX;
	if ((void *)(uh + 1) > data_end)
		return drop(DROP_HEADROOM, p->pkt_len);
	/* Source port in the dynamic range, from the flow. A zero checksum is
	 * allowed for tunnels (RFC 6935); computing one would mean summing the
	 * whole packet. */
	uh->source = bpf_htons(0xc000 | (flow_hash & 0x3fff));
	uh->dest = bpf_htons(gue_port);
	uh->len = bpf_htons(p->l3_len + UDP_HDR_LEN);
	uh->check = 0;
	return XDP_TX;
}

static __always_inline int balance(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct packet p = {};
	struct lb_config *cfg;
	struct vip_meta *vip;
	struct backend *b = NULL;
	__u32 zero = 0, idx, outer_len, flow_hash;
	int verdict;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	p.pkt_len = data_end - data;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		verdict = parse_ipv4(data, data_end, &p);
	else if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		verdict = parse_ipv6(data, data_end, &p);
	else
		return XDP_PASS;
	/* A refused packet for a VIP address is dropped and counted by reason:
	 * this node's stack does not own VIP addresses, so passing it up would
	 * at best drop it uncounted. Refused traffic for other addresses (the
	 * node's own, transit) goes to the stack as before. */
	if (verdict == PARSE_REFUSE)
		return is_vip_addr(p.flow.dst, p.flow.family) ? drop(p.refused, p.pkt_len) : XDP_PASS;
	if (verdict != PARSE_OK)
		return verdict;

	vip = find_vip(&p);
	if (!vip)
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return XDP_PASS;
	count(&vip_stats, vip->vip_num, p.pkt_len);

	/* One hash serves both the ring (for VIPs without hashing flags) and
	 * the outer source address. */
	flow_hash = hash_flow(&p.flow, cfg->hash_seed);
	idx = pick_backend(&p, vip, cfg, flow_hash, &b);
	if (!idx || !b)
		return drop(DROP_NO_BACKEND, p.pkt_len);

	outer_len = b->family == FAMILY_V4 ? IPV4_HDR_LEN : IPV6_HDR_LEN;
	if (vip->flags & VIP_F_GUE)
		outer_len += UDP_HDR_LEN;
	if (p.l3_len + outer_len > cfg->mtu) {
		if (!p.df)
			return drop(DROP_TOO_BIG, p.pkt_len);
		if (p.flow.family == FAMILY_V4)
			return send_frag_needed(ctx, cfg->mtu - outer_len);
		return send_packet_too_big(ctx, cfg->mtu - outer_len);
	}

	count(&backend_stats, idx, p.pkt_len);
	return encap(ctx, &p, b, cfg, flow_hash, vip->flags & VIP_F_GUE);
}

SEC("xdp")
int xdp_balance(struct xdp_md *ctx)
{
	return balance(ctx);
}

/* Benchmark only: balances, then undoes the encapsulation so that the
 * kernel's BPF_PROG_TEST_RUN repeat loop, which does not reset the frame,
 * feeds the same client packet every time. The undo costs a few ns, so the
 * figure errs high. */
SEC("xdp")
int xdp_balance_bench(struct xdp_md *ctx)
{
	struct ethhdr *eth = (void *)(long)ctx->data;
	struct ethhdr saved;
	int verdict, grown;
	long before;

	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	saved = *eth;
	before = (long)ctx->data_end - (long)ctx->data;
	verdict = balance(ctx);
	grown = (long)ctx->data_end - (long)ctx->data - before;
	if (grown <= 0 || grown > 64 || bpf_xdp_adjust_head(ctx, grown))
		return XDP_ABORTED;
	eth = (void *)(long)ctx->data;
	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	*eth = saved;
	return verdict;
}

/* Strips one outer IPv4 or IPv6 header carrying IPv4 or IPv6 (IP-in-IP),
 * or carrying UDP to the GUE port with IPv4 or IPv6 right after the UDP
 * header (GUE variant 1), and hands the inner packet to the stack. Anything
 * else passes untouched. */
SEC("xdp")
int xdp_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	unsigned char dst[ETH_ALEN], src[ETH_ALEN];
	__u32 outer_len, ev;
	__u8 inner;
	void *l4;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) > data_end)
			return XDP_PASS;
		if (iph->ihl != 5 || (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
			return XDP_PASS;
		inner = iph->protocol;
		outer_len = IPV4_HDR_LEN;
		ev = EV_DECAP_V4;
		l4 = iph + 1;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = (void *)(eth + 1);

		if ((void *)(ip6h + 1) > data_end)
			return XDP_PASS;
		inner = ip6h->nexthdr;
		outer_len = IPV6_HDR_LEN;
		ev = EV_DECAP_V6;
		l4 = ip6h + 1;
	} else {
		return XDP_PASS;
	}
	if (inner == IPPROTO_UDP) {
		struct udphdr *uh = l4;
		__u8 *version = (void *)(uh + 1);

		if ((void *)(version + 1) > data_end || uh->dest != bpf_htons(gue_port))
			return XDP_PASS;
		switch (*version >> 4) {
		case 4:
			inner = IPPROTO_IPIP;
			break;
		case 6:
			inner = IPPROTO_IPV6;
			break;
		default:
			return XDP_PASS;
		}
		outer_len += UDP_HDR_LEN;
		ev = EV_DECAP_GUE;
	}
	if (inner != IPPROTO_IPIP && inner != IPPROTO_IPV6)
		return XDP_PASS;

	__builtin_memcpy(dst, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(src, eth->h_source, ETH_ALEN);
	count(&event_stats, ev, data_end - data);
	if (bpf_xdp_adjust_head(ctx, outer_len))
		return drop(DROP_HEADROOM, 0);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, dst, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src, ETH_ALEN);
	eth->h_proto = bpf_htons(inner == IPPROTO_IPIP ? ETH_P_IP : ETH_P_IPV6);
	return XDP_PASS;
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
