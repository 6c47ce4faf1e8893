"""Static facts of the emulated guest: a Fedora Linux 41 Cloud Edition image on a serial console."""

from __future__ import annotations

KERNEL_RELEASE = "6.11.4-301.fc41.x86_64"
KERNEL_VERSION = "#1 SMP PREEMPT_DYNAMIC Sun Oct 20 15:02:33 UTC 2024"
PRETTY_NAME = "Fedora Linux 41 (Cloud Edition)"
TTY = "ttyS0"
IPUTILS_VERSION = "20240905"

# What agetty prints from /etc/issue (\S, then "Kernel \r on an \m (\l)"), preceded by its newline.
ISSUE = f"\n{PRETTY_NAME}\nKernel {KERNEL_RELEASE} on an x86_64 ({TTY})\n\n"

OS_RELEASE = """NAME="Fedora Linux"
VERSION="41 (Cloud Edition)"
RELEASE_TYPE=stable
ID=fedora
VERSION_ID=41
VERSION_CODENAME=""
PLATFORM_ID="platform:f41"
PRETTY_NAME="Fedora Linux 41 (Cloud Edition)"
ANSI_COLOR="0;38;2;60;110;180"
LOGO=fedora-logo-icon
CPE_NAME="cpe:/o:fedoraproject:fedora:41"
HOME_URL="https://fedoraproject.org/"
DOCUMENTATION_URL="https://docs.fedoraproject.org/en-US/fedora/f41/system-administrators-guide/"
SUPPORT_URL="https://ask.fedoraproject.org/"
BUG_REPORT_URL="https://bugzilla.redhat.com/"
REDHAT_BUGZILLA_PRODUCT="Fedora"
REDHAT_BUGZILLA_PRODUCT_VERSION=41
REDHAT_SUPPORT_PRODUCT="Fedora"
REDHAT_SUPPORT_PRODUCT_VERSION=41
SUPPORT_END=2025-12-15
VARIANT="Cloud Edition"
VARIANT_ID=cloud
"""

SELINUX_CONTEXT = "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023"

DMESG = f"""[    0.000000] Linux version {KERNEL_RELEASE} (mockbuild@localhost) (gcc (GCC) 14.2.1 20240912 \
(Red Hat 14.2.1-3), GNU ld version 2.43.1-2.fc41) {KERNEL_VERSION}
[    0.000000] Command line: BOOT_IMAGE=(hd0,gpt3)/boot/vmlinuz-{KERNEL_RELEASE} no_timer_check \
net.ifnames=0 console=tty1 console=ttyS0,115200n8 root=UUID=5e8b3b6b-3b0e-4c43-a3b2-1d2f0c7f6a41 ro \
rootflags=subvol=root
[    0.000000] BIOS-provided physical RAM map:
[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
[    3.816544] systemd[1]: Hostname set to <{{hostname}}>.
"""
