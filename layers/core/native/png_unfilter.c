/*
 * PNG row unfiltering (PNG 1.2, section 6), for the reduced decode of atelier/preview.py.
 *
 * The preview streams a PNG's image data through zlib one row at a time and never holds the whole
 * bitmap: each row is unfiltered here against the previous one and folded into a small image at once.
 * Sub, Average and Paeth depend on the pixel just decoded to their left, so they run byte by byte; in
 * Python that is too slow for a 49 MP image, in C it is about as fast as libpng.
 *
 * Loaded with ctypes; atelier/preview.py decodes in full where the library was not built.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Unfilter `row` (len bytes, without its filter byte) in place, `prev` being the previous row already
 * unfiltered (all zeros for the first row of a pass); bpp is bytes per complete pixel, at least 1.
 * Returns 0, or -1 for an unknown filter type. */
int atelier_png_unfilter(uint8_t *row, const uint8_t *prev, size_t len, size_t bpp, int filter) {
    size_t i;
    switch (filter) {
    case 0:
        return 0;
    case 1:
        for (i = bpp; i < len; i++) row[i] = (uint8_t)(row[i] + row[i - bpp]);
        return 0;
    case 2:
        for (i = 0; i < len; i++) row[i] = (uint8_t)(row[i] + prev[i]);
        return 0;
    case 3:
        for (i = 0; i < bpp && i < len; i++) row[i] = (uint8_t)(row[i] + (prev[i] >> 1));
        for (; i < len; i++) row[i] = (uint8_t)(row[i] + ((row[i - bpp] + prev[i]) >> 1));
        return 0;
    case 4:
        for (i = 0; i < bpp && i < len; i++) row[i] = (uint8_t)(row[i] + prev[i]);
        for (; i < len; i++) {
            int a = row[i - bpp], b = prev[i], c = prev[i - bpp];
            int p = a + b - c;
            int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
            int pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
            row[i] = (uint8_t)(row[i] + pred);
        }
        return 0;
    default:
        return -1;
    }
}
