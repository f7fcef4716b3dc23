// Package seeds runs a randomized test once per seed. The number of seeds
// comes from an environment variable, so a long run (hundreds of seeds
// hunting a rare interleaving) needs no edit, and CI runs the default.
//
// Imports: the standard library only (testing).
package seeds
