/* Types and map layout shared by the balancer and decap programs. The Go
 * side reads these through the bpf2go-generated types, so a field change here
 * is a change of the pinned-map ABI: bump LB_ABI_VERSION with it. */
#pragma once

#include <linux/types.h>

#define LB_ABI_VERSION 2

#define MAX_VIPS 512
#define MAX_BACKENDS 4096
#define DEFAULT_RING_SIZE 65537
#define DEFAULT_LRU_SIZE 65536
#define MAX_MEMBERS 65536

#define FAMILY_V4 4
#define FAMILY_V6 6

/* Per-VIP flags, set by the operator. */
#define VIP_F_HASH_NO_SRC_PORT (1 << 0) /* clients behind NAT churn ports */
#define VIP_F_HASH_DPORT_ONLY (1 << 1)  /* all flows to one port share a backend */
#define VIP_F_NO_LRU (1 << 2)           /* pure Maglev, no per-node flow memory */
#define VIP_F_GUE (1 << 3)              /* encapsulate in GUE (UDP) instead of IP-in-IP */

#define DEFAULT_GUE_PORT 6080

/* Backend flags. */
#define BACKEND_F_VALID (1 << 0)

enum drop_reason {
	DROP_FRAGMENT = 0,
	DROP_IP_OPTIONS,
	DROP_NO_BACKEND,
	DROP_TOO_BIG,        /* too big to encapsulate and the sender allows fragmenting */
	DROP_HEADROOM,       /* could not grow or shrink the packet */
	DROP_MALFORMED,      /* IPv4 IHL < 5, or TCP/UDP whose lengths or header sizes do not add up */
	DROP_REASON_MAX,
};

enum lb_event {
	EV_LRU_HIT = 0,
	EV_LRU_MISS,
	EV_SYN_FLOOD_BYPASS,
	EV_ICMP_TOO_BIG,
	EV_DECAP_V4,
	EV_DECAP_V6,
	EV_DECAP_GUE,
	EV_MAX,
};

/* Addresses are kept in network byte order; an IPv4 address uses addr[0]. */
struct vip_key {
	__u32 addr[4];
	__u16 port; /* network byte order, 0 = every port */
	__u8 proto;
	__u8 family;
};

struct vip_meta {
	__u32 vip_num; /* index of the VIP's Maglev ring and counters */
	__u32 flags;
};

struct vip_addr {
	__u32 addr[4];
	__u8 family;
	__u8 pad[3];
};

struct backend {
	__u32 addr[4];
	__u8 family;
	__u8 flags;
	__u16 pad;
};

struct flow_key {
	__u32 src[4];
	__u32 dst[4];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u16 pad;
};

struct flow_backend {
	__u32 backend;
	__u32 pad;
};

struct lb_config {
	__u32 abi_version; /* LB_ABI_VERSION of the program that owns the maps */
	__u32 ring_size;   /* copy of the load-time constant, for userspace */
	__u8 next_hop_mac[6];
	__u16 gue_port;            /* copy of the load-time constant, for userspace */
	__u32 mtu;                 /* largest outer IP packet the next hop accepts */
	__u32 syn_flood_threshold; /* SYNs per second per CPU; 0 = never bypass */
	__u32 hash_seed;           /* same on every node, or nodes disagree */
	__u32 encap_src4;          /* outer source prefix, low 16 bits from the flow */
	__u32 encap_src6[4];       /* outer source prefix, low 32 bits from the flow */
};

/* Userspace bookkeeping only: which backends a VIP lists and with what
 * weight and state, so a restarted process can re-adopt pinned maps and know
 * everything it knew before. */
struct member_key {
	__u32 vip_num;
	__u32 backend;
};

struct member {
	__u32 weight;
	__u32 state; /* 0 active, 1 draining */
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

struct syn_window {
	__u64 start_ns;
	__u64 syns;
};
