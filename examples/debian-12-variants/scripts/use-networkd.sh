#!/bin/sh
# Hand the network to systemd-networkd: the unit is in /etc/systemd/network (written by cloud-init from the
# image's network block), cloud-init's own network configuration is disabled, and ifupdown must not bring up
# the interface a second time with what cloud-init wrote on this build boot.
set -eu
systemctl enable systemd-networkd.service systemd-resolved.service
rm -f /etc/network/interfaces.d/50-cloud-init
if [ -f /etc/network/interfaces ]; then
	# Keep only the loopback stanza: the interfaces belong to networkd now.
	printf 'source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n' > /etc/network/interfaces
fi
