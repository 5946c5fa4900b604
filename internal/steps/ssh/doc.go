// Package ssh is imgform's communicator: it reaches the build VM over SSH through QEMU's user-mode network
// forward on 127.0.0.1, runs commands, uploads files and waits for cloud-init.
//
// Trust goes both ways and neither side is taken on faith:
//
//   - The guest trusts an ephemeral ed25519 key made per layer chain (GenerateKey); cloud-init installs its
//     public half for the build user, and the private half is stored with the layer chain (mode 0600) so a
//     build that resumes from a cached layer can still log in.
//   - imgform trusts only the host keys the guest announced on its serial console, which QEMU writes to a
//     file no network peer can touch (HostKeysFromConsole, PinConsole). A resumed build pins the keys recorded
//     on the boot that made the layer (PinKeys). There is no trust-on-first-use.
//
// The guest is slow and flaky while it boots under TCG emulation: the forwarded port accepts TCP long before
// sshd runs, and cloud-init may restart sshd after the first good login. Dial therefore retries until a full
// login works, and Run reconnects for the next command when a connection dropped before a command started.
package ssh
