# K-means kernels on CSR rows (included by kmeans.pyx), mirroring numba/_sparse.py step
# for step (see its docstring): a row is data[indptr[i]:indptr[i + 1]] at the sorted
# columns indices[...]; nothing is densified.  Labels are the dense kernels' exactly
# (a float64 fast path over the stored entries, certified by _gemm_settles, else the
# exact distance over every feature in order); the Lloyd sums are added per cluster in
# row order.

ctypedef fused csr_index:
    int32_t
    int64_t


cdef double* _csr_transposed(const floating[:, ::1] centers, double* half) except NULL:
    """centers^T in float64 (D x K); ``half`` gets ||c_k||^2 / 2 in float64."""
    cdef Py_ssize_t n_clusters = centers.shape[0], n_features = centers.shape[1], k, j
    cdef double* ct = <double*>_alloc(<size_t>n_features * n_clusters, sizeof(double), False)
    cdef double v, acc
    for k in range(n_clusters):
        acc = 0.0
        for j in range(n_features):
            v = <double>centers[k, j]
            ct[j * n_clusters + k] = v
            acc += v * v
        half[k] = 0.5 * acc
    return ct


cdef inline double _csr_row_sq_norm(const floating* data, Py_ssize_t lo,
                                    Py_ssize_t hi) noexcept nogil:
    cdef double acc = 0.0
    cdef Py_ssize_t p
    for p in range(lo, hi):
        acc += <double>data[p] * <double>data[p]
    return acc


cdef double _exact_sq_dist_csr(const floating* data, const csr_index* indices, Py_ssize_t lo,
                               Py_ssize_t hi, const floating* center,
                               Py_ssize_t n_features) noexcept nogil:
    """``sum_j (x_j - c_j)^2`` over every feature in order, each operation rounded: the
    dense ``_exact_sq_dist`` of the same row, bit for bit (an absent entry is 0)."""
    cdef double acc = 0.0, diff, x
    cdef Py_ssize_t j, p = lo
    for j in range(n_features):
        x = 0.0
        if p < hi and indices[p] == j:
            x = <double>data[p]
            p += 1
        diff = x - <double>center[j]
        acc = acc + fastem_rounded(diff * diff)
    return acc


cdef Py_ssize_t _csr_nearest(const floating* data, const csr_index* indices, Py_ssize_t lo,
                             Py_ssize_t hi, const floating* centers, const double* ct,
                             const double* half, Py_ssize_t n_clusters, Py_ssize_t n_features,
                             double h_max, double rel, double* dots, double* dist,
                             double* sq_dist) noexcept nogil:
    """The exact nearest center of the row; its squared distance into ``sq_dist``."""
    cdef Py_ssize_t p, k, best = 0, second = -1
    cdef const double* col
    cdef double v, x_sq, err
    for k in range(n_clusters):
        dots[k] = 0.0
    for p in range(lo, hi):
        v = <double>data[p]
        col = ct + indices[p] * n_clusters
        for k in range(n_clusters):
            dots[k] += v * col[k]
    for k in range(1, n_clusters):
        v = half[k] - dots[k]
        if v < half[best] - dots[best]:
            second = best
            best = k
        elif second < 0 or v < half[second] - dots[second]:
            second = k
    x_sq = _csr_row_sq_norm(data, lo, hi)
    v = half[best] - dots[best]
    if n_clusters == 1 or _gemm_settles(v, half[second] - dots[second], x_sq,
                                        _gemm_error(x_sq, n_features, h_max, 2.0 ** -53), rel):
        sq_dist[0] = max(x_sq + 2.0 * v, 0.0)
        return best
    best = 0
    for k in range(n_clusters):
        dist[k] = _exact_sq_dist_csr(data, indices, lo, hi, centers + k * n_features, n_features)
        if dist[k] < dist[best]:
            best = k
    sq_dist[0] = dist[best]
    return best


cdef inline double _csr_sq_dist(const floating* data, const csr_index* indices, Py_ssize_t lo,
                                Py_ssize_t hi, double x_sq, const floating* c,
                                double c_sq) noexcept nogil:
    """``||x||^2 - 2 x.c + ||c||^2`` in float64, clamped at 0."""
    cdef double dot = 0.0
    cdef Py_ssize_t p
    for p in range(lo, hi):
        dot += <double>data[p] * <double>c[indices[p]]
    return max(x_sq - 2.0 * dot + c_sq, 0.0)


cdef void _check_csr(const csr_index[::1] indptr, Py_ssize_t n_samples, Py_ssize_t n_data,
                     Py_ssize_t n_indices) except *:
    _check(indptr.shape[0] == n_samples + 1, "indptr does not have n_samples + 1 entries")
    if n_samples > 0:
        _check(0 <= indptr[0] and indptr[n_samples] <= n_data and n_data == n_indices,
               "indptr points outside data / indices")


def assign_labels_csr(const floating[::1] data, const csr_index[::1] indices,
                      const csr_index[::1] indptr, const floating[:, ::1] centers,
                      int[::1] labels, double[::1] min_sq_dist, n_threads):
    """``assign_labels`` of the CSR rows' dense form (see the reference)."""
    cdef Py_ssize_t n_samples = indptr.shape[0] - 1
    cdef Py_ssize_t n_clusters = centers.shape[0], n_features = centers.shape[1]
    _check(labels.shape[0] == n_samples and min_sq_dist.shape[0] == n_samples,
           "labels / min_sq_dist do not have n_samples entries")
    _check_csr(indptr, n_samples, data.shape[0], indices.shape[0])
    if n_samples == 0:
        return
    _check(n_clusters >= 1, "need at least one center")
    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef int n_team = _team_size(n_threads, n_blocks)
    cdef Py_ssize_t b, i, tid
    cdef double h_max = _error_scale(centers)
    cdef double rel = _rel_error(n_features)
    cdef double* half = NULL
    cdef double* ct = NULL
    cdef double* scratch = NULL
    try:
        half = <double*>_alloc(n_clusters, sizeof(double), False)
        ct = _csr_transposed(centers, half)
        scratch = <double*>_alloc(<size_t>n_team * 2 * n_clusters, sizeof(double), False)
        for b in prange(n_blocks, nogil=True, schedule='static', num_threads=n_team):
            tid = threadid()
            for i in range(b * _BLOCK, _block_stop(b * _BLOCK, n_samples)):
                labels[i] = <int>_csr_nearest(
                    &data[0] if data.shape[0] else NULL,
                    &indices[0] if indices.shape[0] else NULL, indptr[i], indptr[i + 1],
                    &centers[0, 0], ct, half, n_clusters, n_features, h_max, rel,
                    scratch + tid * 2 * n_clusters, scratch + tid * 2 * n_clusters + n_clusters,
                    &min_sq_dist[i])
    finally:
        free(half)
        free(ct)
        free(scratch)


def lloyd_step_csr(const floating[::1] data, const csr_index[::1] indices,
                   const csr_index[::1] indptr, const double[::1] sample_weight,
                   const floating[:, ::1] centers, int[::1] labels, double[:, ::1] sums,
                   double[::1] weight_sums, n_threads):
    """``lloyd_step`` of the CSR rows' dense form: the same labels; the sums added per
    cluster in row order (numba's ``lloyd_step_csr``: the assignment parallel over
    blocks, then the sums parallel over the clusters, no K x D slots).  Returns the
    number of labels changed."""
    cdef Py_ssize_t n_samples = indptr.shape[0] - 1
    cdef Py_ssize_t n_clusters = centers.shape[0], n_features = centers.shape[1]
    _check(sample_weight.shape[0] == n_samples and labels.shape[0] == n_samples,
           "sample_weight / labels do not have n_samples entries")
    _check(sums.shape[0] == n_clusters and sums.shape[1] == n_features
           and weight_sums.shape[0] == n_clusters,
           "sums / weight_sums do not have the shape of centers")
    _check_csr(indptr, n_samples, data.shape[0], indices.shape[0])
    if n_samples > 0:
        _check(n_clusters >= 1, "need at least one center")
    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef int n_team = _team_size(n_threads, n_blocks)
    cdef Py_ssize_t b, i, j, k, p, best, tid, n_block_changed, n_changed = 0
    cdef double h_max = 0.0, w, d2, total
    cdef double rel = _rel_error(n_features)
    cdef double* half = NULL
    cdef double* ct = NULL
    cdef double* scratch = NULL
    cdef Py_ssize_t* changed = NULL
    cdef double* row
    try:
        changed = <Py_ssize_t*>_alloc(n_blocks, sizeof(Py_ssize_t), True)
        if n_samples > 0:
            h_max = _error_scale(centers)
            half = <double*>_alloc(n_clusters, sizeof(double), False)
            ct = _csr_transposed(centers, half)
            scratch = <double*>_alloc(<size_t>n_team * 2 * n_clusters, sizeof(double), False)
            for b in prange(n_blocks, nogil=True, schedule='static', num_threads=n_team):
                tid = threadid()
                n_block_changed = 0  # counted here, written once: no false sharing
                for i in range(b * _BLOCK, _block_stop(b * _BLOCK, n_samples)):
                    best = _csr_nearest(
                        &data[0] if data.shape[0] else NULL,
                        &indices[0] if indices.shape[0] else NULL, indptr[i], indptr[i + 1],
                        &centers[0, 0], ct, half, n_clusters, n_features, h_max, rel,
                        scratch + tid * 2 * n_clusters,
                        scratch + tid * 2 * n_clusters + n_clusters, &d2)
                    n_block_changed = n_block_changed + (labels[i] != best)
                    labels[i] = <int>best
                changed[b] = n_block_changed
        with nogil:
            for b in range(n_blocks):
                n_changed += changed[b]
        for k in prange(n_clusters, nogil=True, schedule='static', num_threads=n_team):
            row = &sums[k, 0] if n_features > 0 else NULL
            for j in range(n_features):
                row[j] = 0.0
            total = 0.0
            for i in range(n_samples):
                if labels[i] == k:
                    w = sample_weight[i]
                    total = total + w
                    for p in range(indptr[i], indptr[i + 1]):
                        row[indices[p]] += w * <double>data[p]
            weight_sums[k] = total
    finally:
        free(half)
        free(ct)
        free(scratch)
        free(changed)
    return n_changed


cdef double* _sq_norms_f64(const floating[:, ::1] centers) except NULL:
    cdef Py_ssize_t k, j
    cdef double* out = <double*>_alloc(centers.shape[0], sizeof(double), True)
    for k in range(centers.shape[0]):
        for j in range(centers.shape[1]):
            out[k] += <double>centers[k, j] * <double>centers[k, j]
    return out


def inertia_csr(const floating[::1] data, const csr_index[::1] indices,
                const csr_index[::1] indptr, const double[::1] sample_weight,
                const floating[:, ::1] centers, const int[::1] labels, n_threads):
    """sum_i w_i ||x_i - centers[labels_i]||^2 over CSR rows, in float64."""
    cdef Py_ssize_t n_samples = indptr.shape[0] - 1, n_features = centers.shape[1]
    _check(sample_weight.shape[0] == n_samples and labels.shape[0] == n_samples,
           "sample_weight / labels do not have n_samples entries")
    _check_csr(indptr, n_samples, data.shape[0], indices.shape[0])
    if n_samples == 0:
        return 0.0
    _check(centers.shape[0] >= 1, "need at least one center")
    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef Py_ssize_t n_slots = _n_slots(n_blocks, 8)
    cdef int n_team = _team_size(n_threads, n_slots)
    cdef Py_ssize_t slot, i, k, lo, hi
    cdef double acc, total = 0.0
    cdef double* c_sq = NULL
    cdef double* partial = NULL
    try:
        c_sq = _sq_norms_f64(centers)
        partial = <double*>_alloc(n_slots, sizeof(double), True)
        for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
            acc = 0.0
            for i in range(_slot_start(slot, n_slots, n_blocks),
                           _slot_stop(slot, n_slots, n_blocks, n_samples)):
                lo = indptr[i]
                hi = indptr[i + 1]
                k = labels[i]
                acc = acc + sample_weight[i] * _csr_sq_dist(
                    &data[0] if data.shape[0] else NULL,
                    &indices[0] if indices.shape[0] else NULL, lo, hi,
                    _csr_row_sq_norm(&data[0] if data.shape[0] else NULL, lo, hi),
                    &centers[k, 0], c_sq[k])
            partial[slot] = acc
        for slot in range(n_slots):
            total += partial[slot]
    finally:
        free(c_sq)
        free(partial)
    return total


def kmeanspp_trial_potentials_csr(const floating[::1] data, const csr_index[::1] indices,
                                  const csr_index[::1] indptr, const double[::1] sample_weight,
                                  const floating[:, ::1] candidates,
                                  const double[::1] closest_sq_dist, double[::1] potentials,
                                  n_threads):
    """``kmeanspp_trial_potentials`` over CSR rows."""
    cdef Py_ssize_t n_samples = indptr.shape[0] - 1, n_trials = candidates.shape[0]
    _check(sample_weight.shape[0] == n_samples and closest_sq_dist.shape[0] == n_samples,
           "sample_weight / closest_sq_dist do not have n_samples entries")
    _check(potentials.shape[0] == n_trials, "potentials does not have n_trials entries")
    _check_csr(indptr, n_samples, data.shape[0], indices.shape[0])
    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef Py_ssize_t n_slots = _n_slots(n_blocks, 8 * n_trials)
    cdef int n_team = _team_size(n_threads, n_slots)
    cdef Py_ssize_t slot, i, t, lo, hi
    cdef double x_sq, d2
    cdef double* c_sq = NULL
    cdef double* partial = NULL
    try:
        c_sq = _sq_norms_f64(candidates)
        partial = <double*>_alloc(<size_t>n_slots * n_trials, sizeof(double), True)
        if n_samples > 0 and n_trials > 0:
            for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
                for i in range(_slot_start(slot, n_slots, n_blocks),
                               _slot_stop(slot, n_slots, n_blocks, n_samples)):
                    lo = indptr[i]
                    hi = indptr[i + 1]
                    x_sq = _csr_row_sq_norm(&data[0] if data.shape[0] else NULL, lo, hi)
                    for t in range(n_trials):
                        d2 = _csr_sq_dist(&data[0] if data.shape[0] else NULL,
                                          &indices[0] if indices.shape[0] else NULL, lo, hi,
                                          x_sq, &candidates[t, 0], c_sq[t])
                        partial[slot * n_trials + t] += sample_weight[i] * min(
                            closest_sq_dist[i], d2)
        for t in range(n_trials):
            potentials[t] = 0.0
            for slot in range(n_slots):
                potentials[t] += partial[slot * n_trials + t]
    finally:
        free(c_sq)
        free(partial)


def kmeanspp_update_closest_csr(const floating[::1] data, const csr_index[::1] indices,
                                const csr_index[::1] indptr, const floating[::1] center,
                                double[::1] closest_sq_dist, n_threads):
    """closest_sq_dist = min(closest_sq_dist, ||x - center||^2) over CSR rows, in place."""
    cdef Py_ssize_t n_samples = indptr.shape[0] - 1, j
    _check(closest_sq_dist.shape[0] == n_samples,
           "closest_sq_dist does not have n_samples entries")
    _check_csr(indptr, n_samples, data.shape[0], indices.shape[0])
    if n_samples == 0:
        return
    cdef int n_team = _team_size(n_threads, _n_blocks(n_samples))
    cdef Py_ssize_t i, lo, hi
    cdef double d2, c_sq = 0.0
    for j in range(center.shape[0]):
        c_sq += <double>center[j] * <double>center[j]
    for i in prange(n_samples, nogil=True, schedule='static', num_threads=n_team):
        lo = indptr[i]
        hi = indptr[i + 1]
        d2 = _csr_sq_dist(&data[0] if data.shape[0] else NULL,
                          &indices[0] if indices.shape[0] else NULL, lo, hi,
                          _csr_row_sq_norm(&data[0] if data.shape[0] else NULL, lo, hi),
                          &center[0], c_sq)
        if d2 < closest_sq_dist[i]:
            closest_sq_dist[i] = d2
