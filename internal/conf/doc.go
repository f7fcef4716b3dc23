// Package conf holds the small value types and rules the engines share in
// their settings: durations that read "7d" and print "1h30m0s" in JSON,
// and the rule for names that are also directory names.
//
// Imports: the standard library only.
package conf
