/* The shortest program there is: linked statically, so that an exec of it costs the kernel's
 * exec and nothing else (no dynamic loader). */
int main(void) { return 0; }
