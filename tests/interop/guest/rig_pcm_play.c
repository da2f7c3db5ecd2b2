// rig-pcm-play: plays a tone to an ALSA PCM playback node with the kernel's PCM ioctls
// (include/uapi/sound/asound.h, sound/core/pcm_native.c), for the passthrough scenario's
// isochronous stream through QEMU's usb-audio (48 kHz, 2 channels, S16_LE: hw/usb/dev-audio.c).
// A static helper rather than alsa-utils' aplay: no package, no libasound and no alsa.conf in
// the initramfs, and an xrun shows as EPIPE from the write itself.
//
// usage: rig-pcm-play DEVICE SECONDS        e.g. rig-pcm-play /dev/snd/pcmC1D0p 6
// prints: period=F buffer=F frames=F seconds=S xruns=N
// exit: 0 every frame was written and drained without an xrun, 1 otherwise.

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <sound/asound.h>

#define RATE 48000
#define CHANNELS 2
// 100 ms periods, 20 of them: 2 s of buffer, the most snd-usb-audio allows here. A blocked
// write fails with EIO once no period has elapsed for 1.1 times the buffer's time
// (wait_for_avail in sound/core/pcm_lib.c); under TCG on a busy host a stream stalls for a few
// hundred ms now and then, directly on xhci too.
#define PERIOD 4800
#define PERIODS 20

static struct snd_mask *mask(struct snd_pcm_hw_params *p, int n)
{
	return &p->masks[n - SNDRV_PCM_HW_PARAM_FIRST_MASK];
}

static struct snd_interval *interval(struct snd_pcm_hw_params *p, int n)
{
	return &p->intervals[n - SNDRV_PCM_HW_PARAM_FIRST_INTERVAL];
}

static void set_mask(struct snd_pcm_hw_params *p, int n, unsigned int bit)
{
	struct snd_mask *m = mask(p, n);
	memset(m, 0, sizeof *m);
	m->bits[bit / 32] = 1u << (bit % 32);
}

static void set_interval(struct snd_pcm_hw_params *p, int n, unsigned int v)
{
	struct snd_interval *i = interval(p, n);
	memset(i, 0, sizeof *i);
	i->min = i->max = v;
	i->integer = 1;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: rig-pcm-play DEVICE SECONDS\n");
		return 1;
	}
	unsigned long total = strtoul(argv[2], NULL, 10) * RATE;
	int fd = open(argv[1], O_WRONLY);
	if (fd < 0) {
		fprintf(stderr, "rig-pcm-play: open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	// Everything allowed, as alsa-lib's snd_pcm_hw_params_any() starts; the kernel refines
	// the rest and chooses what is left open (snd_pcm_hw_params_choose).
	struct snd_pcm_hw_params hw;
	memset(&hw, 0, sizeof hw);
	for (int n = SNDRV_PCM_HW_PARAM_FIRST_MASK; n <= SNDRV_PCM_HW_PARAM_LAST_MASK; n++)
		memset(mask(&hw, n), 0xff, sizeof(struct snd_mask));
	for (int n = SNDRV_PCM_HW_PARAM_FIRST_INTERVAL; n <= SNDRV_PCM_HW_PARAM_LAST_INTERVAL; n++)
		interval(&hw, n)->max = ~0u;
	hw.rmask = ~0u;
	hw.info = ~0u;
	set_mask(&hw, SNDRV_PCM_HW_PARAM_ACCESS, SNDRV_PCM_ACCESS_RW_INTERLEAVED);
	set_mask(&hw, SNDRV_PCM_HW_PARAM_FORMAT, SNDRV_PCM_FORMAT_S16_LE);
	set_mask(&hw, SNDRV_PCM_HW_PARAM_SUBFORMAT, SNDRV_PCM_SUBFORMAT_STD);
	set_interval(&hw, SNDRV_PCM_HW_PARAM_CHANNELS, CHANNELS);
	set_interval(&hw, SNDRV_PCM_HW_PARAM_RATE, RATE);
	set_interval(&hw, SNDRV_PCM_HW_PARAM_PERIOD_SIZE, PERIOD);
	set_interval(&hw, SNDRV_PCM_HW_PARAM_PERIODS, PERIODS);
	if (ioctl(fd, SNDRV_PCM_IOCTL_HW_PARAMS, &hw) < 0) {
		fprintf(stderr, "rig-pcm-play: HW_PARAMS: %s\n", strerror(errno));
		return 1;
	}
	if (ioctl(fd, SNDRV_PCM_IOCTL_PREPARE) < 0) {
		fprintf(stderr, "rig-pcm-play: PREPARE: %s\n", strerror(errno));
		return 1;
	}
	// A 750 Hz triangle (64 frames a cycle), so that the packets are not all zeros.
	int16_t buf[PERIOD * CHANNELS];
	for (int f = 0; f < PERIOD; f++) {
		int k = f % 64;
		int16_t v = (int16_t)((k < 32 ? k : 64 - k) * 1024 - 16384);
		for (int c = 0; c < CHANNELS; c++)
			buf[f * CHANNELS + c] = v;
	}
	unsigned long written = 0;
	int xruns = 0;
	// The stream starts with the first write (the default start threshold is 1 frame).
	double t0 = now();
	while (written < total) {
		unsigned long n = total - written < PERIOD ? total - written : PERIOD;
		struct snd_xferi x = { .buf = buf, .frames = n };
		if (ioctl(fd, SNDRV_PCM_IOCTL_WRITEI_FRAMES, &x) < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EPIPE) {
				fprintf(stderr, "rig-pcm-play: WRITEI_FRAMES: %s\n", strerror(errno));
				return 1;
			}
			// An xrun: the buffer ran empty. Count it and go on from a prepared stream.
			xruns++;
			fprintf(stderr, "rig-pcm-play: xrun after %lu frames\n", written);
			if (ioctl(fd, SNDRV_PCM_IOCTL_PREPARE) < 0) {
				fprintf(stderr, "rig-pcm-play: PREPARE: %s\n", strerror(errno));
				return 1;
			}
			continue;
		}
		written += (unsigned long)x.result;
	}
	// DRAIN returns once the driver has taken the last frame (the stream stops).
	if (ioctl(fd, SNDRV_PCM_IOCTL_DRAIN) < 0) {
		fprintf(stderr, "rig-pcm-play: DRAIN: %s\n", strerror(errno));
		return 1;
	}
	double secs = now() - t0;
	printf("period=%u buffer=%u frames=%lu seconds=%.3f xruns=%d\n",
	       interval(&hw, SNDRV_PCM_HW_PARAM_PERIOD_SIZE)->min,
	       interval(&hw, SNDRV_PCM_HW_PARAM_BUFFER_SIZE)->min, written, secs, xruns);
	close(fd);
	return xruns == 0 ? 0 : 1;
}
