/* The C macros of fastem's Cython kernels, in one place (included through _common.pxd,
   so before any verbatim C block of a kernel module). */
#ifndef FASTEM_H
#define FASTEM_H

/* 1 when the module is compiled with OpenMP (else every prange runs serially). */
#ifdef _OPENMP
#define FASTEM_COMPILED_WITH_OPENMP 1
#else
#define FASTEM_COMPILED_WITH_OPENMP 0
#endif

/* A function compiled twice, for AVX2 and the baseline, the one to run picked at load
   time (gcc's target_clones on x86-64 Linux; elsewhere the baseline alone). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FASTEM_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FASTEM_CLONES
#endif

/* A function in which no multiply and add are contracted into a fused multiply-add, so
   that its float operations round as written (gcc's optimize attribute; clang takes
   "#pragma clang fp contract(off)" in the function's body instead). */
#if defined(__GNUC__) && !defined(__clang__)
#define FASTEM_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define FASTEM_NO_CONTRACT
#endif

#endif
