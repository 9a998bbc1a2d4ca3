# Builds container root filesystems from files already on this Debian machine: a program is
# copied with the shared libraries `ldd` names for it, so an image needs no base image and no
# registry. Sourced by scripts/image and scripts/lib/image/test-images.

# A merged-/usr skeleton like Debian's: /bin, /sbin, /lib, /lib64 point into /usr, so a
# library found by ldd under /lib/... and copied under /usr/lib/... is found either way.
rootfs_init() {
  local root="$1"
  rm -rf "$root"
  mkdir -p "$root"/usr/{bin,sbin,lib,lib64} "$root"/{etc,tmp,proc,sys,dev,run,var/run}
  chmod 1777 "$root/tmp"
  ln -s usr/bin "$root/bin"
  ln -s usr/sbin "$root/sbin"
  ln -s usr/lib "$root/lib"
  ln -s usr/lib64 "$root/lib64"
  # Name lookups of ports and protocols (nft, curl, nc) and of the root user.
  cp /etc/protocols /etc/services "$root/etc/"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
}

# Where a host file lands in a merged-/usr rootfs: its directory resolved (/lib/x → /usr/lib/x),
# its own name kept, since a program asks for the link name (libc.so.6, sh), not the target.
rootfs_path() {
  local dir
  dir="$(readlink -f "$(dirname "$1")")"
  case "$dir" in
    /lib | /lib/* | /lib64 | /lib64/* | /bin | /bin/* | /sbin | /sbin/*) dir="/usr$dir" ;;
  esac
  printf '%s/%s' "$dir" "$(basename "$1")"
}

# rootfs_add ROOT FILE [DEST]: copies FILE's content to DEST (default: its own path), and
# every shared library it loads, once.
rootfs_add() {
  local root="$1" file="$2" dest="${3:-}" lib to
  [ -n "$dest" ] || dest="$(rootfs_path "$file")"
  mkdir -p "$root$(dirname "$dest")"
  cp -L --preserve=mode "$file" "$root$dest"
  # ldd prints "name => /path (addr)" and "/lib64/ld-linux-x86-64.so.2 (addr)"; for a static
  # program it prints "not a dynamic executable" and nothing is added.
  for lib in $(ldd "$file" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'); do
    to="$(rootfs_path "$lib")"
    [ -e "$root$to" ] && continue
    mkdir -p "$root$(dirname "$to")"
    cp -L --preserve=mode "$lib" "$root$to"
  done
}

# rootfs_add_tool ROOT NAME...: adds the programs named, as found on PATH.
rootfs_add_tool() {
  local root="$1" name path
  shift
  for name in "$@"; do
    path="$(command -v "$name")" || { echo "rootfs: $name not found on this machine" >&2; return 1; }
    rootfs_add "$root" "$path"
  done
}
