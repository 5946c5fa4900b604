// Package smoke holds what the test step checks in a brand-new instance of an image's result: the seed of
// the test instance (a fresh instance-id and a throwaway key for a user that exists only in that seed) and
// the built-in checks as shell scripts run in the guest. It boots nothing itself: steps/vm runs the checks,
// and the engine puts their text into the test step's key, so a changed check never reuses an old result.
package smoke
