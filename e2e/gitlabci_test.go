package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/steps/qemu/qemutest"
)

// checkCITemplate runs the GitLab CI template (ci/imgform.gitlab-ci.yml) for real, with gitlab-ci-local and
// its shell executor, as a project that includes it would: a throwaway git repository holds a
// .gitlab-ci.yml that includes the template and a copy of configDir's configuration (not its outputs).
// configDir must have been built with the remote cache oci://registryHost/imgform-cache (plain HTTP on
// loopback, no credentials), and its dist/ holds that build's outputs. Every job runs as a fresh runner
// would, with an empty IMGFORM_CACHE_DIR, the imgform binary of this tree on PATH and a team key secret:
//   - the rules: a push to the default branch has validate and apply, a merge request validate and plan;
//   - validate passes;
//   - plan (merge request, read-only cache) finds every step in the remote: plan.json shows each step cached
//     with "remote" and to_run 0;
//   - apply (default branch) downloads the outputs, builds nothing, and its artifacts hold outputs with the
//     sha256 of configDir/dist;
//   - plan again, on another fresh runner: all remote hits still.
func checkCITemplate(t *testing.T, configDir, registryHost string) {
	t.Helper()
	// gitlab-ci-local copies each job's files and artifacts with rsync.
	for _, tool := range []string{"gitlab-ci-local", "rsync"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the CI template's test needs %s, which is not on PATH: run scripts/install-gitlab-ci-local.sh as root "+
				"(it installs the pinned gitlab-ci-local from npm, and rsync): %v", tool, err)
		}
	}
	gcl, _ := exec.LookPath("gitlab-ci-local")
	root, err := qemutest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	// The source image of setup(): the same path, so the same keys as configDir's build.
	img, err := qemutest.TestImage(ctx)
	if err != nil {
		t.Fatal(err)
	}

	binDir := filepath.Dir(buildImgform(t))

	name := filepath.Base(configDir)
	p := &ciPipeline{t: t, gcl: gcl, repo: newCIRepo(t, root, configDir), vars: map[string]string{
		"PATH":                        binDir + string(os.PathListSeparator) + os.Getenv("PATH"),
		"IMGFORM_REMOTE_CACHE":        "oci://" + registryHost + "/imgform-cache",
		"IMGFORM_KEY_SECRET":          randomHex(t, 32),
		"IMGFORM_VAR_source_url":      img,
		"IMGFORM_VAR_source_checksum": "file:" + img + ".SHA256SUMS",
		"IMGFORM_VAR_zstd_level":      "3",
		"IMGFORM_ACCELERATOR":         "tcg",       // KVM hangs on some hosts; nothing should boot here anyway
		"DOCKER_CONFIG":               t.TempDir(), // no credentials: the registry is plain HTTP on loopback
	}}

	if got, want := p.list(ctx, false), "imgform-validate=on_success imgform-apply=on_success"; got != want {
		t.Errorf("jobs of a push to the default branch: %s, want %s", got, want)
	}
	if got, want := p.list(ctx, true), "imgform-validate=on_success imgform-plan=on_success"; got != want {
		t.Errorf("jobs of a merge request pipeline: %s, want %s", got, want)
	}

	if log := p.run(ctx, "imgform-validate", false, 5*time.Minute); !strings.Contains(log, "The configuration in "+name+" is valid") {
		t.Errorf("imgform-validate passed but did not say the configuration is valid:\n%s", logTail(log, 20))
	}

	p.checkRemotePlan(ctx, "first plan")
	p.checkApply(ctx, configDir)
	p.checkRemotePlan(ctx, "second plan") // another fresh runner, after the apply
}

// ciPipeline runs jobs of a throwaway repository's pipeline with gitlab-ci-local.
type ciPipeline struct {
	t    *testing.T
	gcl  string
	repo string
	vars map[string]string // --variable for every job
	runs int
}

// newCIRepo makes a git repository (branch main, one commit) that includes the template from
// ci/imgform.gitlab-ci.yml and holds configDir's configuration, without its outputs, under its own name.
func newCIRepo(t *testing.T, root, configDir string) string {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "project")
	name := filepath.Base(configDir)
	if err := os.MkdirAll(filepath.Join(repo, "ci"), 0o755); err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(filepath.Join(root, "ci", "imgform.gitlab-ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"ci/imgform.gitlab-ci.yml": string(tmpl),
		".gitlab-ci.yml": "# A project that uses imgform's template, as docs/gitlab-ci.md shows.\n" +
			"include:\n  - local: ci/imgform.gitlab-ci.yml\n\n" +
			"variables:\n  IMGFORM_CONFIG_DIR: " + name + "\n",
		".gitignore": ".gitlab-ci-local/\n" + name + "/dist/\n",
	}
	for path, content := range files {
		if err := os.WriteFile(filepath.Join(repo, path), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(repo, name), 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(configDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "dist" {
			continue
		}
		if out, err := exec.Command("cp", "-r", filepath.Join(configDir, e.Name()), filepath.Join(repo, name)).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "."},
		{"-c", "user.name=imgform e2e", "-c", "user.email=e2e@imgform.invalid", "-c", "commit.gpgsign=false",
			"commit", "-q", "-m", "imgform configuration"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = ciEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return repo
}

// ciEnv is this process's environment without what would change gitlab-ci-local's behaviour or leak into
// the jobs (execa hands the jobs its own environment under theirs): its GCL_* options, GitLab CI's own
// variables when the test itself runs in GitLab CI, imgform's and Docker's settings, git's.
func ciEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "GCL_"), strings.HasPrefix(k, "CI_"), strings.HasPrefix(k, "GITLAB_"),
			strings.HasPrefix(k, "IMGFORM_"), strings.HasPrefix(k, "DOCKER_"), strings.HasPrefix(k, "GIT_"), k == "CI":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// args are gitlab-ci-local's options for one invocation: shell executor, each job in its own copy of the
// repository (.gitlab-ci-local/builds/JOB) with its artifacts under .gitlab-ci-local/artifacts/JOB, and a
// fresh runner's empty IMGFORM_CACHE_DIR. mr makes it a merge request pipeline.
func (p *ciPipeline) args(mr bool) []string {
	p.runs++
	args := []string{"--color=false", "--home", filepath.Join(p.repo, ".gitlab-ci-local", "home"),
		"--shell-isolation", "--force-shell-executor", "--no-artifacts-to-source"}
	vars := map[string]string{"IMGFORM_CACHE_DIR": filepath.Join(p.t.TempDir(), fmt.Sprintf("runner-%d-cache", p.runs))}
	for k, v := range p.vars {
		vars[k] = v
	}
	if mr {
		vars["CI_PIPELINE_SOURCE"] = "merge_request_event"
		args = append(args, "--ignore-predefined-vars", "CI_PIPELINE_SOURCE")
	}
	for k, v := range vars {
		args = append(args, "--variable", k+"="+v)
	}
	return args
}

func (p *ciPipeline) command(ctx context.Context, args []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, p.gcl, args...)
	cmd.Dir = p.repo
	cmd.Env = ciEnv()
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// list returns the jobs gitlab-ci-local would run in a push to main, or in a merge request pipeline, as
// "name=when" in pipeline order.
func (p *ciPipeline) list(ctx context.Context, mr bool) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := p.command(ctx, append(p.args(mr), "--list-csv"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		p.t.Fatalf("gitlab-ci-local --list-csv: %v (does it parse ci/imgform.gitlab-ci.yml?)\n%s%s", err, logTail(stdout.String(), 20), logTail(stderr.String(), 20))
	}
	// name;stage;when;allowFailure;...: the header, then one line per job.
	var jobs []string
	header := true
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ";")
		if len(f) < 3 {
			continue
		}
		if header {
			header = f[0] != "name"
			continue
		}
		jobs = append(jobs, f[0]+"="+f[2])
	}
	return strings.Join(jobs, " ")
}

// run runs one job of the pipeline and returns its log; the job must pass.
func (p *ciPipeline) run(ctx context.Context, job string, mr bool, timeout time.Duration) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	cmd := p.command(ctx, append(p.args(mr), job))
	out, err := cmd.CombinedOutput()
	logFile := filepath.Join(p.repo, ".gitlab-ci-local", "output", job+".log")
	log, lerr := os.ReadFile(logFile)
	if lerr != nil {
		log = []byte(fmt.Sprintf("(no job log: %v)", lerr))
	}
	passed := regexp.MustCompile(`(?m)^\s*PASS\s+` + regexp.QuoteMeta(job) + `\s*$`).Match(out)
	if err != nil || !passed {
		why := "did not pass"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			why = fmt.Sprintf("did not finish in %s", timeout)
		} else if err != nil {
			why = err.Error()
		}
		p.t.Fatalf("CI job %s (gitlab-ci-local in %s) %s\njob log (end):\n%s\ngitlab-ci-local (end):\n%s",
			job, p.repo, why, logTail(string(log), 40), logTail(string(out), 15))
	}
	p.t.Logf("CI job %s passed in %s", job, time.Since(start).Round(100*time.Millisecond))
	return string(log)
}

// ciPlanJSON is the part of `imgform plan -json` (docs/plan-json.md) the test reads.
type ciPlanJSON struct {
	Images []struct {
		Name  string `json:"name"`
		Steps []struct {
			ID     string `json:"id"`
			Action string `json:"action"`
			Remote *struct {
				Size int64 `json:"size"`
			} `json:"remote"`
		} `json:"steps"`
	} `json:"images"`
	ToRun        int `json:"to_run"`
	CachedRemote int `json:"cached_remote"`
}

// checkRemotePlan runs the plan job in a merge request pipeline on a fresh runner: every step must be a
// remote hit.
func (p *ciPipeline) checkRemotePlan(ctx context.Context, what string) {
	p.t.Helper()
	log := p.run(ctx, "imgform-plan", true, 5*time.Minute)
	art := filepath.Join(p.repo, ".gitlab-ci-local", "artifacts", "imgform-plan")
	b, err := os.ReadFile(filepath.Join(art, "plan.json"))
	if err != nil {
		p.t.Fatalf("%s: the plan job's artifacts have no plan.json: %v\njob log (end):\n%s", what, err, logTail(log, 40))
	}
	var plan ciPlanJSON
	if err := json.Unmarshal(b, &plan); err != nil {
		p.t.Fatalf("%s: plan.json: %v\n%s", what, err, logTail(string(b), 20))
	}
	var steps int
	var notRemote []string
	for _, ip := range plan.Images {
		for _, sp := range ip.Steps {
			steps++
			if sp.Action != "cached" || sp.Remote == nil {
				notRemote = append(notRemote, fmt.Sprintf("%s=%s (remote %v)", sp.ID, sp.Action, sp.Remote != nil))
			}
		}
	}
	if steps == 0 || len(notRemote) > 0 || plan.ToRun != 0 || plan.CachedRemote != steps {
		p.t.Errorf("%s: want every one of the %d steps cached from the remote, got to_run %d, cached_remote %d; not remote hits: %s\nplan job log (end):\n%s",
			what, steps, plan.ToRun, plan.CachedRemote, strings.Join(notRemote, " "), logTail(log, 40))
	}
	if txt, err := os.ReadFile(filepath.Join(art, "plan.txt")); err != nil || !strings.Contains(string(txt), "cached (remote") {
		p.t.Errorf("%s: plan.txt artifact (%v) does not show remote hits:\n%s", what, err, logTail(string(txt), 20))
	}
	if !strings.Contains(log, "nothing to build") {
		p.t.Errorf("%s: plan -detailed-exitcode did not exit 0 (nothing to build):\n%s", what, logTail(log, 20))
	}
}

// checkApply runs the apply job on the default branch on a fresh runner: it must download what it needs,
// build nothing, and hand over the outputs of configDir's build as artifacts.
func (p *ciPipeline) checkApply(ctx context.Context, configDir string) {
	p.t.Helper()
	log := p.run(ctx, "imgform-apply", false, 20*time.Minute)
	if done := regexp.MustCompile(`(?m)^.*: done in .*$`).FindAllString(log, -1); len(done) > 0 {
		p.t.Errorf("imgform-apply built steps instead of downloading the outputs:\n%s\njob log (end):\n%s", strings.Join(done, "\n"), logTail(log, 40))
	}
	if !regexp.MustCompile(`: (pulled|restored) in `).MatchString(log) {
		p.t.Errorf("imgform-apply's log shows nothing pulled or restored from the remote cache:\n%s", logTail(log, 40))
	}
	p.checkOutputs(configDir, filepath.Join(p.repo, ".gitlab-ci-local", "artifacts", "imgform-apply", filepath.Base(configDir), "dist"))
}

// checkOutputs compares the apply job's artifacts with the outputs of the build that filled the cache:
// every output listed in configDir/dist/SHA256SUMS with the same sha256, the same SHA256SUMS, a manifest, and
// the same downloaded files.
func (p *ciPipeline) checkOutputs(configDir, artDist string) {
	p.t.Helper()
	want, err := os.ReadFile(filepath.Join(configDir, "dist", "SHA256SUMS"))
	if err != nil {
		p.t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(artDist, "SHA256SUMS"))
	if err != nil {
		ls, _ := exec.Command("ls", "-lR", filepath.Dir(filepath.Dir(artDist))).CombinedOutput()
		p.t.Fatalf("the apply job's artifacts have no SHA256SUMS: %v\nartifacts:\n%s", err, ls)
	}
	if !bytes.Equal(got, want) {
		p.t.Errorf("the apply job's SHA256SUMS:\n%s\nthe build's:\n%s", got, want)
	}
	outputs := 0
	for _, line := range strings.Split(string(want), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(line, "#") {
			continue
		}
		outputs++
		file := strings.TrimPrefix(f[1], "*")
		if _, err := os.Stat(filepath.Join(artDist, file)); err != nil {
			p.t.Errorf("output %s is not in the apply job's artifacts: %v", file, err)
			continue
		}
		if sum := sha256Of(p.t, filepath.Join(artDist, file)); sum != f[0] {
			p.t.Errorf("output %s in the apply job's artifacts has sha256 %s, the build's %s", file, sum, f[0])
		}
	}
	if outputs == 0 {
		p.t.Errorf("configDir's SHA256SUMS lists no output:\n%s", want)
	}
	if m, _ := filepath.Glob(filepath.Join(artDist, "*.manifest.json")); len(m) == 0 {
		p.t.Error("the apply job's artifacts have no manifest")
	}
	// The files the build downloaded from its guest (the example's dpkg database) come along, pulled alone
	// from their layer's object in the remote.
	downloads, _ := filepath.Glob(filepath.Join(configDir, "dist", "*.dpkg-status"))
	for _, d := range downloads {
		art := filepath.Join(artDist, filepath.Base(d))
		if _, err := os.Stat(art); err != nil {
			p.t.Errorf("the downloaded file %s is not in the apply job's artifacts: %v", filepath.Base(d), err)
		} else if sha256Of(p.t, art) != sha256Of(p.t, d) {
			p.t.Errorf("the downloaded file %s in the apply job's artifacts differs from the build's", filepath.Base(d))
		}
	}
	if len(downloads) == 0 {
		p.t.Error("the build that filled the cache downloaded no dpkg status into dist/")
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// logTail is the last n lines of s, for failure messages.
func logTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
