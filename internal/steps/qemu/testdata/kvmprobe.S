# kvmprobe.S: the guest ResolveAccelerator boots under KVM (the bytes are kvmProbe in kvmprobe.go).
#
# A multiboot (v1) kernel in the "a.out kludge" form: a flat binary loaded at 1 MiB that QEMU's -kernel
# loader starts in 32-bit protected mode. It prints a line on the serial port, then does some work the way
# a boot loader does (GRUB decompresses its core in 32-bit mode without paging): a 50 million step loop and
# 64 passes writing and reading 1 MiB. It prints a second line, builds identity page tables, enters 64-bit
# long mode, loops again, prints a third line and writes to QEMU's isa-debug-exit port, which ends QEMU with
# exit code (0x31 << 1) | 1 = 99. This takes about 50 ms under working KVM and under a second with TCG.
#
# Why the work: on a host where KVM is broken (nested virtualization), a guest gets through SeaBIOS in
# seconds and even switches to protected mode, but then runs so slowly that GRUB never shows up; a probe
# that only switched modes passed there in 5-10 s while real guests hung.
#
# Rebuild (TestKVMProbeMatchesSource checks that the Go bytes match this file):
#   as --32 -o kvmprobe.o kvmprobe.S && ld -m elf_i386 -Ttext=0x100000 --oformat binary -o kvmprobe.bin kvmprobe.o
        .code32
        .set BASE, 0x100000
        .set PT, 0x200000
        .globl _start
_start:
        .long 0x1BADB002
        .long 0x00010000
        .long -(0x1BADB002 + 0x00010000)
        .long BASE
        .long BASE
        .long 0
        .long 0
        .long BASE + (entry - _start)
entry:
        cli
        mov $0x1ff000, %esp
        mov $(BASE + (msg_pm - _start)), %esi
        call puts
        mov $50000000, %ecx
3:      dec %ecx
        jnz 3b
        mov $64, %ebx
4:      mov $0x300000, %edi
        mov $(1024*1024/4), %ecx
        mov %ebx, %eax
        rep stosl
        mov $0x300000, %esi
        mov $(1024*1024/4), %ecx
5:      lodsl
        add %eax, %edx
        dec %ecx
        jnz 5b
        dec %ebx
        jnz 4b
        mov $(BASE + (msg_work - _start)), %esi
        call puts
        mov $PT, %edi
        xor %eax, %eax
        mov $(3*4096/4), %ecx
        rep stosl
        movl $(PT + 0x1003), PT
        movl $(PT + 0x2003), PT + 0x1000
        movl $0x83, PT + 0x2000
        movl $0x200083, PT + 0x2008
        mov $PT, %eax
        mov %eax, %cr3
        mov %cr4, %eax
        or $0x20, %eax
        mov %eax, %cr4
        mov $0xC0000080, %ecx
        rdmsr
        or $0x100, %eax
        wrmsr
        lgdt BASE + (gdtr - _start)
        mov %cr0, %eax
        or $0x80000001, %eax
        mov %eax, %cr0
        ljmp $0x08, $(BASE + (long - _start))
        .code64
long:
        mov $0x1ff000, %esp
        mov $50000000, %ecx
6:      dec %ecx
        jnz 6b
        mov $(BASE + (msg_lm - _start)), %esi
        call puts
        mov $0xf4, %dx
        mov $0x31, %al
        out %al, %dx
1:      hlt
        jmp 1b
        .code32
puts:
        lodsb
        test %al, %al
        jz 2f
        mov %al, %ah
        mov $0x3fd, %dx
1:      in %dx, %al
        test $0x20, %al
        jz 1b
        mov $0x3f8, %dx
        mov %ah, %al
        out %al, %dx
        jmp puts
2:      ret
        .p2align 3
gdt:
        .quad 0
        .quad 0x00AF9A000000FFFF
gdtr:
        .word gdtr - gdt - 1
        .long BASE + (gdt - _start)
msg_pm: .asciz "imgform-probe: protected mode\r\n"
msg_work: .asciz "imgform-probe: protected mode code runs\r\n"
msg_lm: .asciz "imgform-probe: long mode\r\n"
