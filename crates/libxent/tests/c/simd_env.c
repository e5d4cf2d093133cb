/*
 * Prints the kernel tier this process runs (so that a test can set XENT_SIMD and see what
 * it chose), after a call, and checks that the answer is one static string.
 */
#include <stdio.h>

#include "xent.h"

int main(void) {
    const char *first = xent_simd_level();
    float logits[4] = {1.0f, 2.0f, 3.0f, 4.0f}, loss = 0.0f;
    int64_t target = 2;
    if (xent_cross_entropy_f32(logits, 1, 4, 4, &target, NULL, &loss, NULL, 0, NULL) !=
            XENT_STATUS_OK ||
        xent_simd_level() != first) {
        puts("FAIL");
        return 1;
    }
    printf("%s\n", first);
    return 0;
}
