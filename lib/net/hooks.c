/* hooks.c -- what the mesh does for lib/sched and lib/lineage, as the
 * table rayc_init installs in rt->hooks (see rayc__cluster_hooks). */
#include "net/net.h"

const rayc__cluster_hooks rayc__net_hooks = {
	.place = rayc__net_place_locked,
	.task_finished = rayc__net_task_finished_locked,
	.fetch = rayc__net_fetch_locked,
	.obj_released = rayc__net_obj_released_locked,
	.view_done = rayc__net_view_done_locked,
	.send = rayc__net_send_task_locked,
	.name_gone = rayc__net_name_gone_locked,
	.name_adopt = rayc__net_name_adopt_locked,
	.unborrow = rayc__net_actor_unborrow_locked,
	.batch_paused = rayc__net_answers_flush_locked,
};
