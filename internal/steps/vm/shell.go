package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/qemu"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// ShellJob is a throwaway VM on a cached layer, for a person to look around in (imgform shell): the VM
// resumes the state saved with the layer, or boots it, on an overlay of its own that is thrown away with
// WorkDir. Nothing reaches the store.
type ShellJob struct {
	Image *config.Image
	// Layer is the cached layer's object and LayerLabel its step, as people read it.
	Layer      *state.Object
	LayerLabel string
	// Seed is the object with the image's seed ISO (step.SeedFile), attached as in the build.
	Seed *state.Object
	// Root is the store's folder: the layer's chain must lie within it.
	Root string
	// WorkDir is an empty folder for the overlay and the VM's files; the caller removes it.
	WorkDir string
	// Message reports warnings and Info notes (the resume).
	Message, Info func(string)
	// Terminal is where the session goes; Command, when set, is run instead of an interactive shell.
	Terminal ssh.Terminal
	Command  string
}

// Shell starts the VM, runs the interactive shell (or Command) as the build user, and stops the VM. It
// returns the shell's or the command's exit code.
func (r *Runner) Shell(ctx context.Context, job *ShellJob) (int, error) {
	layer := job.Layer.Path(step.LayerFile)
	if err := qemu.CheckChainWithin(layer, job.Root); err != nil {
		return -1, fmt.Errorf("the cached layer of %s: %w", job.LayerLabel, err)
	}
	buildKey, err := os.ReadFile(job.Layer.Path(step.BuildKeyFile))
	if err != nil {
		return -1, fmt.Errorf("the build key of the cached layer of %s: %w", job.LayerLabel, err)
	}
	hostKeys, err := os.ReadFile(job.Layer.Path(step.HostKeysFile))
	if err != nil {
		return -1, fmt.Errorf("the host keys of the cached layer of %s: %w", job.LayerLabel, err)
	}
	disk := filepath.Join(job.WorkDir, "shell.qcow2")
	newOverlay := overlayMaker(disk, layer, "qcow2", 0, 0)
	if err := newOverlay(ctx); err != nil {
		return -1, err
	}
	message := func(text string) {
		if job.Message != nil {
			job.Message(text)
		}
	}
	saved := usableState(job.Layer, job.Image.Name, job.LayerLabel, message)
	spec := bootSpec{
		Job:      &step.SessionJob{Image: job.Image, WorkDir: job.WorkDir, Message: message, Info: job.Info},
		Disk:     disk,
		Seed:     job.Seed.Path(step.SeedFile),
		BuildKey: buildKey, HostKeys: hostKeys,
		State: saved, ResetDisk: newOverlay, Layer: job.LayerLabel,
	}
	boot := r.boot
	if boot == nil {
		boot = r.bootQEMU
	}
	m, err := boot(ctx, spec)
	if err != nil {
		return -1, err
	}
	defer m.Kill()
	if job.Command != "" {
		return m.Run(ctx, job.Command, ssh.RunOptions{Stdout: job.Terminal.Out, Stderr: job.Terminal.Err})
	}
	return m.Interactive(ctx, job.Terminal)
}
