// rig-sg-write: sends one SCSI WRITE(10) straight to a disk with the SG_IO ioctl, past the
// block layer's read-only flag, and prints how the device answered (the storage scenario
// checks that a write-protected drive refuses it itself: CHECK CONDITION, DATA PROTECT).
//
// usage: rig-sg-write DEVICE LBA BLOCK_SIZE
// prints: status=0xSS host=0xHH driver=0xDD sense_key=0xK asc=0xAA ascq=0xQQ
// exit: 0 the write succeeded (GOOD), 1 the device refused it (CHECK CONDITION), 2 other.

#include <errno.h>
#include <fcntl.h>
#include <scsi/sg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define WRITE_10 0x2a
#define CHECK_CONDITION 0x02

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: rig-sg-write DEVICE LBA BLOCK_SIZE\n");
		return 2;
	}
	unsigned long lba = strtoul(argv[2], NULL, 0);
	unsigned long block = strtoul(argv[3], NULL, 0);
	if (block == 0 || block > 65536) {
		fprintf(stderr, "rig-sg-write: bad block size %s\n", argv[3]);
		return 2;
	}
	// Root may send any command on a read-only open (CAP_SYS_RAWIO).
	int fd = open(argv[1], O_RDONLY | O_NONBLOCK);
	if (fd < 0) {
		fprintf(stderr, "rig-sg-write: open %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	uint8_t *data = malloc(block);
	if (data == NULL)
		return 2;
	for (unsigned long i = 0; i < block; i++)
		data[i] = (uint8_t)(0xa5 ^ i);
	uint8_t cdb[10] = { WRITE_10, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16),
			    (uint8_t)(lba >> 8), (uint8_t)lba, 0, 0, 1, 0 };
	uint8_t sense[32];
	memset(sense, 0, sizeof(sense));
	struct sg_io_hdr io;
	memset(&io, 0, sizeof(io));
	io.interface_id = 'S';
	io.dxfer_direction = SG_DXFER_TO_DEV;
	io.cmd_len = sizeof(cdb);
	io.cmdp = cdb;
	io.dxfer_len = (unsigned int)block;
	io.dxferp = data;
	io.mx_sb_len = sizeof(sense);
	io.sbp = sense;
	io.timeout = 20000;
	if (ioctl(fd, SG_IO, &io) < 0) {
		fprintf(stderr, "rig-sg-write: SG_IO on %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	// Fixed format (0x70/0x71): key in byte 2, ASC/ASCQ in 12/13; descriptor (0x72/0x73):
	// key in byte 1, ASC/ASCQ in 2/3.
	int descriptor = (sense[0] & 0x7f) >= 0x72;
	unsigned key = (descriptor ? sense[1] : sense[2]) & 0x0f;
	unsigned asc = descriptor ? sense[2] : sense[12];
	unsigned ascq = descriptor ? sense[3] : sense[13];
	printf("status=0x%02x host=0x%02x driver=0x%02x sense_key=0x%x asc=0x%02x ascq=0x%02x\n",
	       io.status, io.host_status, io.driver_status, key, asc, ascq);
	if (io.status == 0 && io.host_status == 0 && io.driver_status == 0)
		return 0;
	return io.status == CHECK_CONDITION ? 1 : 2;
}
