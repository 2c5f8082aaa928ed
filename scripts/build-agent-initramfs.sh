#!/usr/bin/env bash
# Builds the deploy agent's boot files from Debian packages: the kernel of
# linux-image-amd64, and an initramfs holding busybox-static, the kernel
# modules for common disks and NICs (with modules.dep, for busybox
# modprobe) and `metalflow agent`. Prints the kernel's and the initramfs's
# paths, one a line.
#
#   scripts/build-agent-initramfs.sh [--out DIR]
#
# The result is cached in ${METALFLOW_AGENT_CACHE:-/var/cache/metalflow/agent}/KEY/,
# KEY a hash of this script, the agent's Go sources and the package
# versions, so a second run with nothing changed prints the cached paths at
# once. --out DIR copies the two files to DIR too (vmlinuz, initrd.img).
#
# Boot them with: console=ttyS0 metalflow.url=<boot service URL> metalflow.token=<token>
# Needs: Debian (apt-get, dpkg-deb), Go, zstd or gzip; root to write the cache.
set -euo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

out=""
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=${2:?--out needs a directory}; shift 2 ;;
	--out=*) out=${1#--out=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "build-agent-initramfs: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done

log() { echo "build-agent-initramfs: $*" >&2; }
die() { log "$*"; exit 1; }

for tool in apt-get apt-cache dpkg-deb go sha256sum; do
	command -v "$tool" >/dev/null || die "needs $tool (a Debian host with Go)"
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${METALFLOW_AGENT_CACHE:-/var/cache/metalflow/agent}
mkdir -p "$cache/debs"
# One build at a time: tests in several packages may ask at once.
exec 9>"$cache/.lock"
flock 9

# The modules the agent's machines need, by name; their dependencies come
# along. af_packet is for udhcpc where it is not built in.
modules="virtio_pci virtio_blk virtio_net virtio_scsi ahci sd_mod nvme e1000 e1000e af_packet"

candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }'; }
meta_version=$(candidate linux-image-amd64)
if [ -z "$meta_version" ] || [ "$meta_version" = "(none)" ]; then
	log "no package lists; apt-get update"
	apt-get update -qq >&2
	meta_version=$(candidate linux-image-amd64)
fi
[ -n "$meta_version" ] && [ "$meta_version" != "(none)" ] || die "linux-image-amd64 is not available from apt"
# The metapackage depends on the versioned kernel package.
kernel_pkg=$(apt-cache show "linux-image-amd64=$meta_version" | awk -F': ' '/^Depends:/ { print $2; exit }' |
	tr ',' '\n' | awk '$1 ~ /^linux-image-[0-9]/ { print $1; exit }')
[ -n "$kernel_pkg" ] || die "cannot tell which kernel linux-image-amd64 $meta_version depends on"
kernel_version=$(candidate "$kernel_pkg")
busybox_version=$(candidate busybox-static)
[ -n "$busybox_version" ] && [ "$busybox_version" != "(none)" ] || die "busybox-static is not available from apt"

# The agent's sources: the module's packages it imports, and its command.
agent_dirs=$(cd "$repo" && go list -deps -f '{{if .Module}}{{if eq .Module.Path "github.com/metalflow/metalflow"}}{{.Dir}}{{end}}{{end}}' ./api/boot/agent)
key=$(
	{
		cat "${BASH_SOURCE[0]}"
		for d in $agent_dirs; do find "$d" -maxdepth 1 -name '*.go' ! -name '*_test.go' | sort | xargs cat; done
		cat "$repo/cmd/metalflow/agent.go" "$repo/cmd/metalflow/main.go" "$repo/cmd/metalflow/commands_agent.go" "$repo/go.mod" "$repo/go.sum"
		go version
		echo "$kernel_pkg=$kernel_version busybox-static=$busybox_version $modules"
	} | sha256sum | cut -c1-16
)
dest=$cache/$key

if [ ! -s "$dest/vmlinuz" ] || [ ! -s "$dest/initrd.img" ]; then
	log "building $dest ($kernel_pkg $kernel_version, busybox-static $busybox_version)"
	work=$(mktemp -d "$cache/.build.XXXXXX")
	trap 'rm -rf "$work"' EXIT

	(cd "$cache/debs" && apt-get download -qq -o APT::Sandbox::User=root \
		"$kernel_pkg=$kernel_version" "busybox-static=$busybox_version" >&2)
	dpkg-deb -x "$cache/debs/${kernel_pkg}_${kernel_version//:/%3a}_amd64.deb" "$work/kernel"
	dpkg-deb -x "$cache/debs/busybox-static_${busybox_version//:/%3a}_amd64.deb" "$work/busybox"
	kver=$(ls "$work/kernel/lib/modules")
	busybox=$work/busybox/bin/busybox

	root=$work/root
	mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,etc,lib/modules/"$kver"}
	cp "$busybox" "$root/bin/busybox"
	for applet in $("$busybox" --list); do
		[ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
	done
	# The kernel calls /sbin/modprobe for modules drivers ask for.
	ln -sf ../bin/busybox "$root/sbin/modprobe"

	# Copy the wanted modules and what they depend on, by the full tree's
	# modules.dep (Debian ships none: depmod runs at install).
	kmods=$work/kernel/lib/modules/$kver
	"$busybox" depmod -b "$work/kernel" "$kver"
	needed=$(awk -v want="$modules" '
		BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) { gsub("_", "-", w[i]); wanted[w[i]] = 1 } }
		{
			sub(":", "", $1)
			name = $1; sub(".*/", "", name); sub("\\.ko.*", "", name); gsub("_", "-", name)
			if (name in wanted) for (i = 1; i <= NF; i++) print $i
		}' "$kmods/modules.dep" | sort -u)
	for m in $needed; do
		mkdir -p "$root/lib/modules/$kver/$(dirname "$m")"
		cp "$kmods/$m" "$root/lib/modules/$kver/$m"
	done
	cp "$kmods/modules.builtin" "$kmods/modules.order" "$root/lib/modules/$kver/"
	"$busybox" depmod -b "$root" "$kver"
	echo "$modules" >"$root/etc/agent-modules"

	cat >"$root/etc/udhcpc.script" <<'EOF'
#!/bin/sh
# udhcpc's hook: configure the lease. The first lease's router is the
# default route; later NICs do not take it over.
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound | renew)
	ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}"
	if [ -n "$router" ] && [ -z "$(ip -4 route show default)" ]; then
		set -- $router
		route add default gw "$1" dev "$interface"
	fi
	if [ -n "$dns" ]; then
		for server in $dns; do echo "nameserver $server"; done >/etc/resolv.conf
	fi
	;;
esac
exit 0
EOF
	cat >"$root/init" <<'EOF'
#!/bin/sh
# The agent initramfs: mount the kernel's filesystems, load drivers, ask
# DHCP on every NIC, run the agent, power off. The agent retries until the
# network answers, so DHCP runs beside it rather than before it.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/agent-modules); do
	modprobe "$m" 2>/dev/null
done
ip link set lo up
for dev in /sys/class/net/*; do
	nic=${dev##*/}
	[ -e "$dev/device" ] || continue
	ip link set "$nic" up
	udhcpc -f -i "$nic" -s /etc/udhcpc.script -T 2 -A 2 >"/tmp/udhcpc.$nic.log" 2>&1 &
done
echo "metalflow agent initramfs: starting the agent"
/bin/metalflow agent
echo "metalflow agent exited with status $?; powering off"
sync
poweroff -f
EOF
	chmod 0755 "$root/init" "$root/etc/udhcpc.script"

	# -tags agent links the agent's command alone (commands_agent.go): the
	# other roles would make the initramfs several times larger, and every
	# boot fetches and unpacks it.
	log "building the agent"
	(cd "$repo" && CGO_ENABLED=0 go build -tags agent -trimpath -ldflags='-s -w' -o "$root/bin/metalflow" ./cmd/metalflow)

	mkdir -p "$work/out"
	cp "$work/kernel/boot/vmlinuz-$kver" "$work/out/vmlinuz"
	if command -v zstd >/dev/null; then
		compress="zstd -q -3 -T0"
	else
		compress="gzip -6"
	fi
	(cd "$root" && find . | sort | "$busybox" cpio -o -H newc 2>/dev/null) | $compress >"$work/out/initrd.img"
	printf '%s\n' "kernel $kernel_pkg $kernel_version ($kver)" "busybox-static $busybox_version" "modules $(echo $needed)" >"$work/out/manifest"
	rm -rf "$dest"
	mv "$work/out" "$dest"
fi

if [ -n "$out" ]; then
	mkdir -p "$out"
	cp "$dest/vmlinuz" "$dest/initrd.img" "$out/"
	dest=$(cd "$out" && pwd)
fi
echo "$dest/vmlinuz"
echo "$dest/initrd.img"
