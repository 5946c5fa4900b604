package state

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleRecord() *Record {
	at := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	return &Record{
		Applied: at,
		Images: map[string]*ImageRecord{
			"debian-12-base": {Steps: []StepRecord{
				{Name: "fetch", Kind: "fetch", Key: testKey("fetch"),
					Inputs: map[string]string{"source checksum": "sha512:0123456789abcdef"}},
				{Name: "provision resolved", Kind: "provision", Key: testKey("provision"),
					Inputs: map[string]string{"script scripts/use-resolved.sh": "89abcdef01234567", "step cloud-init": "deadbeefdeadbeef"}},
				{Name: "export qcow2", Kind: "export", Key: testKey("export"), Outputs: []OutputRecord{{
					Name: "qcow2", Path: "dist/debian-12-base-2026.11.qcow2.zst", SHA256: strings.Repeat("ab", 32),
					Size: 1 << 30, ModTime: at, Key: testKey("export"),
				}}},
			}},
		},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	st, _ := openStore(t)
	const id = "/home/me/images"
	rec := sampleRecord()
	if err := st.SaveRecord(id, rec); err != nil {
		t.Fatal(err)
	}
	if rec.FormatVersion != 0 || rec.ID != "" {
		t.Errorf("SaveRecord changed its argument: %+v", rec)
	}
	got, err := st.LoadRecord(id)
	if err != nil {
		t.Fatal(err)
	}
	want := sampleRecord()
	want.FormatVersion, want.ID = RecordFormatVersion, id
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadRecord = %+v\nwant %+v", got, want)
	}
	if s := got.Image("debian-12-base").Step("export qcow2"); s == nil || s.Outputs[0].Name != "qcow2" {
		t.Errorf("Step lookup = %+v", s)
	}
	if got.Image("nope").Step("nope") != nil {
		t.Error("lookup of a missing image and step is not nil")
	}
	// Another configuration has its own record.
	if other, err := st.LoadRecord("/home/me/other"); err != nil || other != nil {
		t.Errorf("LoadRecord of another id = %v, %v", other, err)
	}
}

func TestLoadRecordErrors(t *testing.T) {
	tests := map[string]struct {
		content string
		want    string
	}{
		"newer format":      {`{"format_version": 2, "images": {"x": "a new shape"}}`, "written by a newer imgform"},
		"no format version": {`{"images": {}}`, "no format_version"},
		"zero version":      {`{"format_version": 0}`, "format_version 0"},
		"not json":          {`format_version: 1`, "not valid JSON"},
		"truncated":         {`{"format_version": 1, "images": {`, "not valid JSON"},
		"wrong shape":       {`{"format_version": 1, "images": []}`, "unsupported record format"},
		"value not digest":  {`{"format_version": 1, "images": {"a": {"steps": [{"name": "x", "inputs": {"v": "hunter2"}}]}}}`, "is not a digest"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			st, _ := openStore(t)
			if err := os.WriteFile(st.recordPath("cfg"), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			rec, err := st.LoadRecord("cfg")
			if !errors.Is(err, ErrRecordFormat) || !strings.Contains(err.Error(), tc.want) || rec != nil {
				t.Fatalf("LoadRecord = %v, %v; want ErrRecordFormat saying %q", rec, err, tc.want)
			}
			// Only a record of a newer imgform is kept: everything else is damaged and may be replaced.
			if damaged := name != "newer format"; errors.Is(err, ErrRecordDamaged) != damaged {
				t.Errorf("%v: damaged %t, want %t", err, !damaged, damaged)
			}
			problems, err := st.VerifyRecords()
			if err != nil || len(problems) != 1 || !strings.Contains(problems[0].Err.Error(), tc.want) {
				t.Errorf("VerifyRecords = %+v, %v", problems, err)
			}
		})
	}
}

func TestSaveRecordRefusesValues(t *testing.T) {
	tests := map[string]func(r *Record){
		"password value": func(r *Record) {
			r.Images["debian-12-base"].Steps[0].Inputs["variable admin_password"] = "hunter2hunter2"
		},
		"short digest": func(r *Record) { r.Images["debian-12-base"].Steps[0].Inputs["variable x"] = "abc" },
		"bad output sum": func(r *Record) {
			r.Images["debian-12-base"].Steps[2].Outputs[0].SHA256 = "nope"
		},
		"nil image": func(r *Record) { r.Images["empty"] = nil },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			st, _ := openStore(t)
			rec := sampleRecord()
			mutate(rec)
			err := st.SaveRecord("cfg", rec)
			if err == nil {
				t.Fatal("SaveRecord succeeded")
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error repeats the value: %v", err)
			}
			if got, err := st.LoadRecord("cfg"); got != nil || err != nil {
				t.Errorf("a refused record was stored: %v, %v", got, err)
			}
		})
	}
}

func TestCompareInputs(t *testing.T) {
	tests := map[string]struct {
		old, cur map[string]string
		want     []string
	}{
		"same":    {map[string]string{"a": "01234567"}, map[string]string{"a": "01234567"}, nil},
		"changed": {map[string]string{"script scripts/x.sh": "01234567"}, map[string]string{"script scripts/x.sh": "89abcdef"}, []string{"script scripts/x.sh changed"}},
		"added and removed": {map[string]string{"variable old": "01234567"}, map[string]string{"variable packages": "01234567"},
			[]string{"variable old removed", "variable packages added"}},
		"from nothing": {nil, map[string]string{"b": "01234567", "a": "01234567"}, []string{"a added", "b added"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, c := range CompareInputs(tc.old, tc.cur) {
				got = append(got, c.String())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"format_version": 1, "images": {"a": {"steps": [{"name": "x", "key": "` + testKey("x").String() + `"}]}}}`))
	f.Add([]byte(`{"format_version": 3}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := parseRecord(b)
		if err != nil {
			if !errors.Is(err, ErrRecordFormat) {
				t.Fatalf("error %v does not wrap ErrRecordFormat", err)
			}
			return
		}
		if rec.FormatVersion < 1 || rec.FormatVersion > RecordFormatVersion {
			t.Fatalf("accepted format_version %d", rec.FormatVersion)
		}
	})
}
