#!/usr/bin/env bash
# Builds metalflow's test OS image: a small Debian bookworm (amd64) raw disk
# image that boots under both legacy BIOS (SeaBIOS) and UEFI (OVMF), runs
# cloud-init against a NoCloud seed and phones home. metalflow's deploy tests
# stream it to a VM's disk and wait for that phone-home.
#
#   scripts/build-image.sh [--out DIR]      (root, Debian; needs the mirror)
#
# Prints the image's path as the last line of stdout (everything else goes to
# stderr). The image is named debian-metalflow-<key>.raw, with a .sha256 file
# beside it (sha256sum format); <key> hashes this script and everything under
# scripts/image/ (the package list is in this file), so a changed recipe
# builds a new image and an unchanged one is returned at once from DIR
# (default /var/cache/metalflow/images, outside the repository). Downloaded
# .debs are kept in DIR/debs so a rebuild after a recipe change is quicker.
#
# Disk layout (GPT, 512-byte sectors; partitions by PARTLABEL):
#   1 "bios-boot"  1 MiB   BIOS boot partition: GRUB's i386-pc core.img
#   2 "esp"       32 MiB   EFI system partition, FAT16: EFI/BOOT/BOOTX64.EFI
#                          (the removable-media path, so no NVRAM entry is
#                          needed)
#   3 "root"      rest     ext4, label "root": kernel, initrd, grub.cfg
# Both GRUBs are standalone images (every module built in) whose embedded
# config finds the root filesystem by UUID and reads /boot/grub/grub.cfg
# from it; the kernel's root= is the same UUID. Nothing names a device, since
# the disk may be vda, sda or nvme0n1. The GRUB images are made with
# grub-mkimage and placed by hand (no grub-install: it wants a block device
# for the target and probes the host's disks), so no loop device is needed:
# the filesystems are built as separate files (mkfs.ext4 -d, mtools) and
# copied into the disk at their offsets.
#
# Seed forms (NoCloud, cloud-init 22.4): cloud-init looks, via blkid, for a
# filesystem labelled "cidata" (or "CIDATA"), vfat or iso9660, on any block
# device or partition. Checked by internal/testimage's boot tests:
#   - a FAT image labelled cidata (mtools: mformat -v cidata) attached as a
#     second virtio disk: BIOS and UEFI (TestBoot);
#   - a GPT partition appended to the image's own disk, FAT labelled cidata
#     (what a deploy agent can write after streaming the image): UEFI
#     (TestBootSeedPartition). The agent must move the backup GPT to the end
#     of the (larger) disk first (sfdisk --relocate gpt-bak-std).
# iso9660 (a config-drive-like CD) is supported by cloud-init but not tested
# here (no ISO tool on the machine). The seed holds meta-data (instance-id,
# local-hostname), user-data (#cloud-config: users/ssh_authorized_keys,
# phone_home {url, post: [instance_id, hostname], tries}) and network-config
# (v2; DHCP on the NIC matched by MAC, rendered for systemd-networkd).
#
# Boot speed (power-on to phone-home under TCG is what deploy tests wait
# for): GRUB timeout 0, quiet kernel, an initramfs with only the storage
# modules (scripts/image/overlay), cloud-init limited to NoCloud and the
# modules a node needs, one ed25519 host key, no apt/man-db/e2scrub/fstrim
# timers, networkd's wait-online satisfied by any one link within 30 s,
# no swap, no fsck of the root at boot.
#
# Measured (2 cores shared with other work, qemu TCG, -m 1024 -smp 2, q35,
# virtio), the high figures while the machine was busy with others' work:
#   build: 80-156 s cold (debs downloaded or cached alike: the mirror is not
#   the bottleneck), 0.02 s cached; image 539 MB raw (367 MB allocated,
#   sparse). Power-on to phone-home: BIOS 40-88 s, UEFI 38-79 s. Of ~40 s,
#   firmware and GRUB take ~5-10 s, kernel and initramfs ~8 s, systemd
#   until cloud-init ~15 s, cloud-init's four stages ~20 s.
set -euo pipefail

# Packages on top of mmdebstrap's "apt" variant (Essential + apt).
# Recommends are not installed.
packages=(
  linux-image-amd64 initramfs-tools zstd   # kernel; zstd: initramfs, modules
  systemd-sysv udev dbus kmod e2fsprogs    # init; dbus: hostnamectl (set_hostname)
  cloud-init openssh-server sudo           # first-boot configuration, access
  iproute2                                 # networkd renderer and debugging
  grub-pc-bin grub-efi-amd64-bin           # bootloader images (grub-mkimage)
)
suite=bookworm
mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security
esp_mib=32

out=/var/cache/metalflow/images
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
# Only the path is printed on stdout; progress and tool output go to stderr.
exec 3>&1 1>&2

# The cache key: this script and the helper tree (file names and contents).
key=$(
  cd "$here"
  { cat build-image.sh; find image -type f | LC_ALL=C sort | while read -r f; do echo "== $f"; cat "$f"; done; } |
    sha256sum | cut -c1-16
)
image=$out/debian-metalflow-$key.raw
if [ -f "$image" ] && [ -f "$image.sha256" ]; then
  echo "$image" >&3
  exit 0
fi

die() { echo "build-image: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap root mode, chroot)"
[ -f /etc/debian_version ] || die "needs a Debian host (mmdebstrap, apt)"

# Host tools, installed when missing (as scripts/test.sh does for its own).
need=()
for pair in mmdebstrap:mmdebstrap mformat:mtools mkfs.ext4:e2fsprogs sfdisk:fdisk; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

mkdir -p "$out/debs"
# Concurrent callers (several test packages at once) build once: the others
# wait here and then find the image.
exec 9>"$out/.lock"
flock 9
if [ -f "$image" ] && [ -f "$image.sha256" ]; then
  echo "$image" >&3
  exit 0
fi

start=$SECONDS
# Under the lock no other build runs, so any work directory left is from a
# killed one. --one-file-system: a build killed hard can leave mmdebstrap's
# bind mounts (/dev, /proc, /sys) inside it, which must not be descended.
rm -rf --one-file-system "$out"/.build-* 2>/dev/null || true
# Built under DIR, so the final rename is atomic and on the same filesystem.
work=$(mktemp -d "$out/.build-$key-XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
root=$work/root

echo "== mmdebstrap $suite: ${packages[*]}"
# Debs are synced in from and out to DIR/debs (mmdebstrap's documented cache
# recipe). The overlay goes in before any package is installed, so the
# kernel's postinst already builds the small initramfs. Modules for hardware
# a server or VM does not have (GPUs, sound, wireless, media, staging, ...)
# are dropped: they are about half of the image. The rest are compressed
# with zstd (kmod decompresses them when loading; the initramfs, built
# before, keeps its own copies): 220 MB of modules become about 60.
# shellcheck disable=SC2016 # hooks are expanded by mmdebstrap's shell
mmdebstrap --variant=apt --arch=amd64 --mode=root \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --skip=essential/unlink \
  --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\" && cp -al '$out/debs/.' \"\$1/var/cache/apt/archives/\"" \
  --setup-hook="cp -r --no-preserve=ownership '$here/image/overlay/.' \"\$1/\"" \
  --customize-hook="find \"\$1/var/cache/apt/archives\" -maxdepth 1 -name '*.deb' -exec cp -ln {} '$out/debs/' \\;" \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd.service' \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer' \
  --customize-hook='for k in "$1"/lib/modules/*/kernel; do rm -rf "$k"/drivers/gpu "$k"/drivers/media "$k"/drivers/net/wireless "$k"/drivers/staging "$k"/drivers/infiniband "$k"/drivers/bluetooth "$k"/drivers/isdn "$k"/drivers/iio "$k"/sound "$k"/net/wireless "$k"/net/mac80211 "$k"/net/bluetooth; done' \
  --customize-hook='find "$1"/lib/modules -name "*.ko" -exec zstd -q --rm -12 {} +' \
  --customize-hook='for v in "$1"/lib/modules/*; do chroot "$1" depmod "${v##*/}"; done' \
  --customize-hook='rm -f "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id; : > "$1"/etc/machine-id' \
  "$suite" "$root" \
  "deb $mirror $suite main" \
  "deb $mirror $suite-updates main" \
  "deb $security $suite-security main"

kvers=("$root"/lib/modules/*)
[ ${#kvers[@]} = 1 ] || die "expected one kernel, found ${kvers[*]}"
kver=${kvers[0]##*/}
[ -f "$root/boot/vmlinuz-$kver" ] && [ -f "$root/boot/initrd.img-$kver" ] || die "no kernel/initrd for $kver"

root_uuid=$(cat /proc/sys/kernel/random/uuid)
cmdline="root=UUID=$root_uuid rw quiet console=tty0 console=ttyS0,115200n8"

# fsck pass 0: a fresh filesystem, and e2fsck takes seconds under TCG.
echo "UUID=$root_uuid / ext4 defaults,noatime 0 0" > "$root/etc/fstab"

mkdir -p "$root/boot/grub"
cat > "$root/boot/grub/grub.cfg" <<EOF
# Written by metalflow's scripts/build-image.sh (not update-grub).
set default=0
set timeout=0
menuentry "Debian GNU/Linux ($kver)" {
	linux /boot/vmlinuz-$kver $cmdline
	initrd /boot/initrd.img-$kver
}
EOF

# The early config embedded in both GRUB images: find the root filesystem by
# UUID, then normal mode reads $prefix/grub.cfg from it.
cat > "$work/early.cfg" <<EOF
search --no-floppy --fs-uuid --set=root $root_uuid
set prefix=(\$root)/boot/grub
EOF
cp "$work/early.cfg" "$root/tmp/early.cfg"
mods="part_gpt part_msdos ext2 fat search search_fs_uuid normal configfile linux echo test"
# grub-mkimage from the image's own grub packages (the host needs none).
chroot "$root" grub-mkimage -O i386-pc -o /tmp/core.img -p /boot/grub -c /tmp/early.cfg \
  biosdisk $mods
chroot "$root" grub-mkimage -O x86_64-efi -o /tmp/BOOTX64.EFI -p /boot/grub -c /tmp/early.cfg \
  efi_gop $mods
mv "$root/tmp/core.img" "$root/tmp/BOOTX64.EFI" "$work/"
cp "$root/usr/lib/grub/i386-pc/boot.img" "$work/boot.img"
rm -f "$root/tmp/early.cfg"

# Root filesystem from the directory: 10% + 64 MiB free for first boot and
# tests; inodes for the files there plus room.
used_mib=$(du -s --block-size=1M "$root" | cut -f1)
files=$(find "$root" -xdev | wc -l)
root_mib=$(( (used_mib * 110 / 100 + 64 + 3) / 4 * 4 ))
mkfs.ext4 -q -F -L root -U "$root_uuid" -N $(( files * 2 + 16384 )) -d "$root" \
  "$work/root.ext4" "${root_mib}M"

# ESP: FAT16 made with mtools (this host's kernel has no vfat to mount).
mformat -i "$work/esp.fat" -C -T $(( esp_mib * 2048 )) -h 64 -s 32 -v ESP ::
mmd -i "$work/esp.fat" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.fat" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI

# Assemble: 1 MiB for the GPT, the partitions, 1 MiB for the backup GPT.
bios_start=2048 bios_sectors=2048
esp_start=$(( bios_start + bios_sectors )) esp_sectors=$(( esp_mib * 2048 ))
root_start=$(( esp_start + esp_sectors )) root_sectors=$(( root_mib * 2048 ))
disk=$work/disk.raw
truncate -s $(( (root_start + root_sectors + 2048) * 512 )) "$disk"
sfdisk -q "$disk" <<EOF
label: gpt
unit: sectors
first-lba: 2048
start=$bios_start, size=$bios_sectors, type=21686148-6449-6E6F-744E-656564454649, name="bios-boot"
start=$esp_start, size=$esp_sectors, type=C12A7328-F81F-11D2-BA4B-00A0C93EC3B8, name="esp"
start=$root_start, size=$root_sectors, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"
EOF
dd if="$work/esp.fat" of="$disk" bs=512 seek=$esp_start conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$disk" bs=512 seek=$root_start conv=notrunc,sparse status=none

# BIOS: what grub-bios-setup would do, by hand. boot.img (the MBR code)
# loads the first sector of core.img from the LBA at offset 0x5c; that
# sector (diskboot) loads the rest from the blocklist in its last 12 bytes,
# whose start LBA grub-mkimage leaves at 2 (the sector after the MBR).
le() { # le VALUE BYTES: VALUE little-endian, as raw bytes
  local i s=
  for (( i = 0; i < $2; i++ )); do s+=$(printf '\\x%02x' $(( ($1 >> (8 * i)) & 255 ))); done
  printf "$s"
}
core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
[ "$core_sectors" -le "$bios_sectors" ] || die "core.img ($core_sectors sectors) does not fit the BIOS boot partition"
[ "$(od -An -t u8 -j 500 -N 8 "$work/core.img" | tr -d ' ')" = 2 ] || die "core.img's blocklist is not where this script expects it"
le $(( bios_start + 1 )) 8 | dd of="$work/core.img" bs=1 seek=500 conv=notrunc status=none
le "$bios_start" 8 | dd of="$work/boot.img" bs=1 seek=$(( 0x5c )) conv=notrunc status=none
# The boot drive check jumps over a workaround for BIOSes that pass a wrong
# drive number; grub-bios-setup turns it on (two NOPs) for hard disks.
printf '\x90\x90' | dd of="$work/boot.img" bs=1 seek=$(( 0x66 )) conv=notrunc status=none
dd if="$work/core.img" of="$disk" bs=512 seek=$bios_start conv=notrunc status=none
# Only the code part of the MBR: the protective partition table stays.
dd if="$work/boot.img" of="$disk" bs=440 count=1 conv=notrunc status=none

(cd "$work" && sha256sum disk.raw | sed "s/disk.raw/${image##*/}/" > disk.raw.sha256)
mv "$work/disk.raw.sha256" "$image.sha256.tmp"
mv "$disk" "$image"
mv "$image.sha256.tmp" "$image.sha256"
# Keep the three newest images (branches with other recipes may still want
# theirs); older ones are a few hundred MB each.
ls -t "$out"/debian-metalflow-*.raw | tail -n +4 | while read -r old; do rm -f "$old" "$old.sha256"; done

echo "== built $image: $(du -h --apparent-size "$image" | cut -f1) ($(du -h "$image" | cut -f1) allocated), kernel $kver, root UUID $root_uuid, $(( SECONDS - start )) s"
echo "$image" >&3
