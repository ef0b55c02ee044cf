/*
 * The 32x32 luma image that imagehash.phash hashes, computed in one pass over the decoded pixels.
 *
 * imagehash calls Pillow's convert("L") and then resize((32, 32), LANCZOS). This file reproduces both
 * with the same integer arithmetic, so its output is byte-identical to Pillow's:
 *
 *   - luma: L = (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16 (Pillow's rgb2l);
 *   - resize: Pillow's two-pass separable convolution (libImaging/Resample.c), horizontal pass first
 *     over the rows the vertical pass reads, each pass rounding to 8 bits; coefficients computed in
 *     double exactly as precompute_coeffs does, then turned into 22-bit fixed point as
 *     normalize_coeffs_8bpc does. The sums are exact int32 arithmetic, so their order does not matter
 *     and they can be vectorised freely; the coefficient code must not be contracted into FMAs
 *     (built with -ffp-contract=off) so that it rounds as Pillow's does.
 *
 * What differs from Pillow is the memory traffic: the luma of a row is computed into a small buffer
 * that stays in cache and is consumed at once by the horizontal pass, so the full-size grey image is
 * never written, and the dot products run on 32-bit lanes the compiler vectorises.
 *
 * Loaded with ctypes (no Python headers, one file for every Python version); atelier/phash.py falls
 * back to Pillow itself when the library is absent.
 */
#include <math.h>
#include <stddef.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86_AVX2_KERNEL 1
#endif
#include <stdint.h>
#include <stdlib.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define PRECISION_BITS (32 - 8 - 2)
#define LANCZOS_SUPPORT 3.0

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MULTIVERSION
#endif

static double sinc_filter(double x) {
    if (x == 0.0) {
        return 1.0;
    }
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos_filter(double x) {
    if (-3.0 <= x && x < 3.0) {
        return sinc_filter(x) * sinc_filter(x / 3);
    }
    return 0.0;
}

static double support_of(int in_size, int side, double *scale, double *filterscale) {
    const float in0 = 0.0f;
    const float in1 = (float)in_size;
    *scale = (double)(in1 - in0) / side;
    *filterscale = *scale < 1.0 ? 1.0 : *scale;
    return LANCZOS_SUPPORT * *filterscale;
}

/* Coefficients per output sample of resampling in_size samples to side: the ksize to allocate. */
int atelier_phash_ksize(int in_size, int side) {
    double scale, filterscale;
    if (in_size < 1 || side < 1) {
        return 0;
    }
    return (int)ceil(support_of(in_size, side, &scale, &filterscale)) * 2 + 1;
}

/*
 * Pillow's precompute_coeffs for the box (0, in_size) followed by normalize_coeffs_8bpc.
 * bounds: 2 * side ints, (first, count) per output sample; kk: side * ksize coefficients.
 * Returns 0, or -1 when memory runs out. The caller may keep them for every image of this size.
 */
int atelier_phash_coefficients(int in_size, int side, int *bounds, int32_t *kk) {
    double scale, filterscale;
    const float in0 = 0.0f;
    const int ksize = atelier_phash_ksize(in_size, side);
    const double support = support_of(in_size, side, &scale, &filterscale);
    if (!ksize) {
        return -1;
    }
    double *pre = malloc((size_t)side * (size_t)ksize * sizeof(double));
    if (!pre) {
        return -1;
    }
    const double inv_filterscale = 1.0 / filterscale;
    for (int xx = 0; xx < side; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) {
            xmin = 0;
        }
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) {
            xmax = in_size;
        }
        xmax -= xmin;
        double *k = &pre[(size_t)xx * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double w = lanczos_filter((x + xmin - center + 0.5) * inv_filterscale);
            k[x] = w;
            ww += w;
        }
        if (ww != 0.0) {
            for (x = 0; x < xmax; x++) {
                k[x] /= ww;
            }
        }
        for (; x < ksize; x++) {
            k[x] = 0;
        }
        bounds[xx * 2 + 0] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)side * (size_t)ksize; i++) {
        if (pre[i] < 0) {
            kk[i] = (int32_t)(-0.5 + pre[i] * (1 << PRECISION_BITS));
        } else {
            kk[i] = (int32_t)(0.5 + pre[i] * (1 << PRECISION_BITS));
        }
    }
    free(pre);
    return 0;
}

static inline uint8_t clip8(int32_t in) {
    int32_t v = in >> PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

/* Pillow's rgb2l over n BGR pixels. */
static void luma_row_scalar(const uint8_t *restrict bgr, int16_t *restrict out, int n) {
    for (int i = 0; i < n; i++) {
        const uint8_t *p = bgr + 3 * (ptrdiff_t)i;
        out[i] = (int16_t)(((uint32_t)p[2] * 19595u + (uint32_t)p[1] * 38470u + (uint32_t)p[0] * 7471u +
                            0x8000u) >>
                           16);
    }
}

#ifdef HAVE_X86_AVX2_KERNEL
/*
 * The same luma, 16 pixels per step: pshufb gathers each channel of 48 interleaved bytes, and
 * vpmaddwd forms R*19595 + G*(38470 - 65536) and B*7471 + 128*256 per pixel; G << 16 completes the
 * G term. Integer arithmetic throughout, equal to the scalar loop for all 2^24 colours.
 */
static const int8_t GATHER[3][3][16] = {
    {{0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
     {-1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14, -1, -1, -1, -1, -1},
     {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1, 4, 7, 10, 13}},
    {{1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
     {-1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1},
     {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14}},
    {{2, 5, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
     {-1, -1, -1, -1, -1, 1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1},
     {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15}},
};

__attribute__((target("avx2"))) static inline __m128i channel(__m128i a, __m128i b, __m128i c, int ch) {
    const __m128i ma = _mm_loadu_si128((const __m128i *)GATHER[ch][0]);
    const __m128i mb = _mm_loadu_si128((const __m128i *)GATHER[ch][1]);
    const __m128i mc = _mm_loadu_si128((const __m128i *)GATHER[ch][2]);
    return _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(a, ma), _mm_shuffle_epi8(b, mb)), _mm_shuffle_epi8(c, mc));
}

__attribute__((target("avx2"))) static void luma_row_avx2(const uint8_t *restrict bgr, int16_t *restrict out,
                                                           int n) {
    const __m256i k_rg = _mm256_set1_epi32((int32_t)(((uint32_t)(uint16_t)(38470 - 65536) << 16) | 19595u));
    const __m256i k_b = _mm256_set1_epi32((int32_t)((256u << 16) | 7471u));
    const __m256i c128 = _mm256_set1_epi16(128);
    const __m256i zero = _mm256_setzero_si256();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const uint8_t *p = bgr + 3 * (ptrdiff_t)i;
        const __m128i a = _mm_loadu_si128((const __m128i *)p);
        const __m128i b = _mm_loadu_si128((const __m128i *)(p + 16));
        const __m128i c = _mm_loadu_si128((const __m128i *)(p + 32));
        const __m256i B = _mm256_cvtepu8_epi16(channel(a, b, c, 0));
        const __m256i G = _mm256_cvtepu8_epi16(channel(a, b, c, 1));
        const __m256i R = _mm256_cvtepu8_epi16(channel(a, b, c, 2));
        __m256i lo = _mm256_madd_epi16(_mm256_unpacklo_epi16(R, G), k_rg);
        lo = _mm256_add_epi32(lo, _mm256_unpacklo_epi16(zero, G));
        lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(B, c128), k_b));
        __m256i hi = _mm256_madd_epi16(_mm256_unpackhi_epi16(R, G), k_rg);
        hi = _mm256_add_epi32(hi, _mm256_unpackhi_epi16(zero, G));
        hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(B, c128), k_b));
        /* unpacklo/hi and packus both work per 128-bit lane, so the pixel order comes back */
        const __m256i l16 = _mm256_packus_epi32(_mm256_srli_epi32(lo, 16), _mm256_srli_epi32(hi, 16));
        _mm256_storeu_si256((__m256i *)(out + i), l16);
    }
    luma_row_scalar(bgr + 3 * (ptrdiff_t)i, out + i, n - i);
}
#endif

static void luma_row(const uint8_t *restrict bgr, int16_t *restrict out, int n) {
#ifdef HAVE_X86_AVX2_KERNEL
    if (__builtin_cpu_supports("avx2")) {
        luma_row_avx2(bgr, out, n);
        return;
    }
#endif
    luma_row_scalar(bgr, out, n);
}

/*
 * Coefficients split as k = hi * 2^SPLIT + lo (0 <= lo < 2^SPLIT), both 16-bit: a sum of 8-bit samples
 * times each part is a 16x16->32-bit dot product (one vpmaddwd per 16 lanes with AVX-512, 8 with AVX2),
 * and hi_sum * 2^SPLIT + lo_sum is Pillow's int32 sum exactly.
 */
#define SPLIT 11

typedef struct {
    const int *bounds;
    int16_t *hi;
    int16_t *lo;
    int ksize;
} split_coeffs;

static int split(const int *bounds, const int32_t *kk, int ksize, int side, split_coeffs *out) {
    const size_t n = (size_t)side * (size_t)ksize;
    out->bounds = bounds;
    out->ksize = ksize;
    out->hi = malloc(n * sizeof(int16_t));
    out->lo = malloc(n * sizeof(int16_t));
    if (!out->hi || !out->lo) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        out->hi[i] = (int16_t)(kk[i] >> SPLIT);
        out->lo[i] = (int16_t)(kk[i] & ((1 << SPLIT) - 1));
    }
    return 0;
}

MULTIVERSION
static int32_t dot(const int16_t *restrict a, const int16_t *restrict hi, const int16_t *restrict lo, int n) {
    int32_t sum_hi = 0, sum_lo = 0;
    for (int x = 0; x < n; x++) {
        sum_hi += a[x] * hi[x];
        sum_lo += a[x] * lo[x];
    }
    return (int32_t)((uint32_t)sum_hi << SPLIT) + sum_lo + (1 << (PRECISION_BITS - 1));
}

/* The same for two rows at once: each coefficient load serves both. */
MULTIVERSION
static void dot2(const int16_t *restrict a, const int16_t *restrict b, const int16_t *restrict hi,
                 const int16_t *restrict lo, int n, int32_t *ra, int32_t *rb) {
    int32_t ah = 0, al = 0, bh = 0, bl = 0;
    for (int x = 0; x < n; x++) {
        ah += a[x] * hi[x];
        al += a[x] * lo[x];
        bh += b[x] * hi[x];
        bl += b[x] * lo[x];
    }
    *ra = (int32_t)((uint32_t)ah << SPLIT) + al + (1 << (PRECISION_BITS - 1));
    *rb = (int32_t)((uint32_t)bh << SPLIT) + bl + (1 << (PRECISION_BITS - 1));
}

MULTIVERSION
static void axpy(int32_t *restrict acc, const int16_t *restrict a, int32_t k, int n) {
    for (int x = 0; x < n; x++) {
        acc[x] += a[x] * k;
    }
}

/* One output sample per window of `src`, clipped to 8 bits. */
static void resample_line(const int16_t *src, const split_coeffs *c, int side, uint8_t *dst, ptrdiff_t step) {
    for (int i = 0; i < side; i++) {
        const size_t at = (size_t)i * c->ksize;
        const int first = c->bounds[i * 2], count = c->bounds[i * 2 + 1];
        dst[i * step] = clip8(dot(src + first, c->hi + at, c->lo + at, count));
    }
}

/*
 * bgr: height rows of width BGR pixels, row_stride bytes apart (pixels contiguous within a row).
 * hb, hk / vb, vk: atelier_phash_coefficients of width / height (read only).
 * out: side * side bytes, row-major. Returns 0, or -1 when memory runs out.
 *
 * Pass order and skipped passes follow ImagingResampleInner: the horizontal pass runs first (over the
 * rows the vertical pass reads) unless the height shrinks by more than twice what the width does; a
 * pass whose size does not change is skipped.
 */
int atelier_phash_luma_resize(const uint8_t *bgr, int height, int width, ptrdiff_t row_stride, int side,
                              const int *hb, const int32_t *hk, const int *vb_in, const int32_t *vk,
                              uint8_t *out) {
    int16_t *line = NULL;
    int32_t *acc = NULL;
    int *vb = NULL;
    uint8_t *mid = NULL;
    split_coeffs h = {0}, v = {0};
    int status = -1;
    if (height < 1 || width < 1 || side < 1) {
        return -1;
    }
    const int need_h = width != side;
    const int need_v = height != side;
    const int horizontal_first = !((height - side) > 0 && (height - side) > (width - side) * 2);
    const int ksize_h = atelier_phash_ksize(width, side);
    const int ksize_v = atelier_phash_ksize(height, side);
    vb = malloc((size_t)side * 2 * sizeof(int));
    if (!vb) {
        goto done;
    }
    for (int i = 0; i < side * 2; i++) {
        vb[i] = vb_in[i];
    }
    const int line_len = width > height ? width : height;
    line = malloc(2 * (size_t)line_len * sizeof(int16_t));
    if (!line || (need_h && split(hb, hk, ksize_h, side, &h)) || (need_v && split(vb, vk, ksize_v, side, &v))) {
        goto done;
    }
    if (horizontal_first) {
        /* luma row -> horizontal pass -> mid (rows y0..y1, side columns) -> vertical pass */
        const int y0 = need_v ? vb[0] : 0;
        const int y1 = need_v ? vb[side * 2 - 2] + vb[side * 2 - 1] : height;
        mid = malloc((size_t)(y1 - y0) * (size_t)side);
        if (!mid) {
            goto done;
        }
        int y = y0;
        if (need_h) { /* rows in pairs, then a last odd one below */
            int16_t *line2 = line + line_len;
            for (; y + 2 <= y1; y += 2) {
                uint8_t *dst = (need_v ? mid : out) + (size_t)(y - y0) * side;
                luma_row(bgr + (ptrdiff_t)y * row_stride, line, width);
                luma_row(bgr + (ptrdiff_t)(y + 1) * row_stride, line2, width);
                for (int i = 0; i < side; i++) {
                    const size_t at = (size_t)i * h.ksize;
                    const int first = h.bounds[i * 2], count = h.bounds[i * 2 + 1];
                    int32_t r0, r1;
                    dot2(line + first, line2 + first, h.hi + at, h.lo + at, count, &r0, &r1);
                    dst[i] = clip8(r0);
                    dst[side + i] = clip8(r1);
                }
            }
        }
        for (; y < y1; y++) {
            uint8_t *dst = (need_v ? mid : out) + (size_t)(y - y0) * side;
            luma_row(bgr + (ptrdiff_t)y * row_stride, line, width);
            if (need_h) {
                resample_line(line, &h, side, dst, 1);
            } else {
                for (int x = 0; x < side; x++) {
                    dst[x] = (uint8_t)line[x];
                }
            }
        }
        if (need_v) {
            for (int i = 0; i < side * 2; i += 2) {
                vb[i] -= y0;
            }
            for (int x = 0; x < side; x++) {
                for (int y = 0; y < y1 - y0; y++) {
                    line[y] = mid[(size_t)y * side + x];
                }
                resample_line(line, &v, side, out + x, side);
            }
        }
    } else {
        /* vertical pass first (here the height always changes): each luma row is added, with its
         * weight, to the accumulators of the output rows whose window holds it; exact integer sums,
         * so the order of the terms does not matter */
        acc = malloc((size_t)side * (size_t)width * sizeof(int32_t));
        mid = malloc((size_t)side * (size_t)width);
        if (!acc || !mid) {
            goto done;
        }
        for (size_t i = 0; i < (size_t)side * (size_t)width; i++) {
            acc[i] = 1 << (PRECISION_BITS - 1);
        }
        const int y0 = vb[0];
        const int y1 = vb[side * 2 - 2] + vb[side * 2 - 1];
        for (int y = y0; y < y1; y++) {
            luma_row(bgr + (ptrdiff_t)y * row_stride, line, width);
            for (int yy = 0; yy < side; yy++) {
                const int first = vb[yy * 2];
                if (y >= first && y < first + vb[yy * 2 + 1]) {
                    axpy(acc + (size_t)yy * width, line, vk[(size_t)yy * ksize_v + (y - first)], width);
                }
            }
        }
        for (size_t i = 0; i < (size_t)side * (size_t)width; i++) {
            mid[i] = clip8(acc[i]);
        }
        for (int yy = 0; yy < side; yy++) {
            const uint8_t *src = mid + (size_t)yy * width;
            if (need_h) {
                for (int x = 0; x < width; x++) {
                    line[x] = src[x];
                }
                resample_line(line, &h, side, out + (size_t)yy * side, 1);
            } else {
                for (int x = 0; x < side; x++) {
                    out[(size_t)yy * side + x] = src[x];
                }
            }
        }
    }
    status = 0;
done:
    free(h.hi);
    free(h.lo);
    free(v.hi);
    free(v.lo);
    free(vb);
    free(line);
    free(acc);
    free(mid);
    return status;
}
